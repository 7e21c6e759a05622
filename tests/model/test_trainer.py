"""The shared loop: sparse updates reach only touched rows, clipping, checkpoints and resume."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from model.batches import BatchSettings, make_batch_fn
from model.config import TrainerConfig
from model.m2grl import M2GRL, M2GRLBatch, RelationBatch, ViewBatch
from model.optim import ClipGroup
from model.trainer import clip_gradients, latest_checkpoint, train
from model.weighting import make_weighting
from tests.model.toy_inputs import item_view_alone, toy_inputs

CFG = TrainerConfig(epochs=1, threads=1, device="cpu")


def _model() -> M2GRL:
    tasks = ["intra:item", "intra:category", "inter:item-category"]
    weighting = make_weighting("adaptive", tasks, instance_task="intra:item")
    return M2GRL({"item": 10, "category": 4}, [("item", "category")], weighting, dim=4, seed=0)


def _batch() -> M2GRLBatch:
    t = torch.tensor
    return M2GRLBatch(
        views={
            "item": ViewBatch(t([1, 2]), t([2, 1]), t([3])),
            "category": ViewBatch(t([0]), t([1]), t([2])),
        },
        relations={"item-category": RelationBatch(t([1]), t([0]), t([[3]]), torch.ones(1, 1))},
    )


def test_one_step_updates_only_the_rows_of_the_batch() -> None:
    model = _model()
    # Non-zero output vectors so every table receives a gradient on the first step.
    for table in model.outputs.values():
        table.weight.normal_()  # type: ignore[operator]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    train(model, lambda epoch: [_batch()], CFG, progress=False)
    after = model.state_dict()

    def changed(key: str) -> list[int]:
        return torch.nonzero((before[key] != after[key]).any(dim=1)).flatten().tolist()

    assert changed("inputs.item.weight") == [1, 2]  # centres 1, 2 and the relation's item 1
    assert changed("outputs.item.weight") == [1, 2, 3]  # contexts and the negative
    assert changed("inputs.category.weight") == [0, 3]  # centre 0, link 0 and alignment negative 3
    assert changed("outputs.category.weight") == [1, 2]
    assert not torch.equal(before["W.item-category"], after["W.item-category"])


class _Dense(nn.Module):
    """A plain dense model (like the metric model): loss returns a tensor only."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(3))

    def loss(self, batch: Tensor) -> Tensor:
        return 1000.0 * ((self.w - batch) ** 2).sum()


def test_dense_models_train_and_gradients_are_clipped() -> None:
    model = _Dense()
    target = torch.tensor([1.0, -2.0, 3.0])
    result = train(
        model, lambda e: [target] * 200, TrainerConfig(epochs=2, lr=0.05, threads=1), progress=False
    )
    assert model.w.grad is not None
    assert model.w.grad.norm().item() == pytest.approx(1.0, rel=1e-4)  # the raw gradient is far larger
    assert torch.allclose(model.w.detach(), target, atol=0.1)
    assert len(result.epoch_losses["total"]) == 2
    assert result.epoch_losses["total"][1] < result.epoch_losses["total"][0]


def _random_batches(epoch: int) -> list[M2GRLBatch]:
    rng = np.random.default_rng(epoch)
    out = []
    for _ in range(5):
        c = torch.from_numpy(rng.integers(0, 10, 8))
        x = torch.from_numpy(rng.integers(0, 10, 8))
        out.append(M2GRLBatch(views={"item": ViewBatch(c, x, torch.from_numpy(rng.integers(0, 10, 4)))}))
    return out


def _item_model() -> M2GRL:
    return M2GRL(
        {"item": 10}, [], make_weighting("adaptive", ["intra:item"], instance_task="intra:item"), dim=4
    )


def test_resume_reproduces_an_uninterrupted_run(tmp_path: Path) -> None:
    full = _item_model()
    train(full, _random_batches, TrainerConfig(epochs=3, threads=1), progress=False)

    part = _item_model()
    ckpt = tmp_path / "ckpt"
    train(part, _random_batches, TrainerConfig(epochs=2, threads=1), checkpoint_dir=ckpt, progress=False)
    assert latest_checkpoint(ckpt) == ckpt / "epoch-0002.pt"
    resumed = _item_model()
    result = train(
        resumed,
        _random_batches,
        TrainerConfig(epochs=3, threads=1),
        checkpoint_dir=ckpt,
        resume=True,
        progress=False,
    )
    assert result.resumed_from == 2 and result.epochs_done == 3
    assert len(result.epoch_losses["intra:item"]) == 3
    for key, value in full.state_dict().items():
        assert torch.allclose(value, resumed.state_dict()[key], atol=1e-6), key


def test_history_records_losses_and_sigma2() -> None:
    model = _item_model()
    result = train(model, _random_batches, TrainerConfig(epochs=2, threads=1), progress=False, log_every=2)
    assert result.steps == [2, 4, 6, 8, 10]
    assert len(result.losses["intra:item"]) == 5 and len(result.sigma2["intra:item"]) == 5
    assert result.pairs == 2 * 5 * 8 and result.pairs_per_s > 0


def test_threads_follow_the_cpu_affinity_not_the_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from model.distributed import DistInfo
    from model.trainer import configure_threads

    before = torch.get_num_threads()
    try:
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {3}, raising=False)
        monkeypatch.setattr(os, "cpu_count", lambda: 64)
        assert configure_threads(TrainerConfig(), DistInfo()) == 1
        assert torch.get_num_threads() == 1
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
        assert configure_threads(TrainerConfig(), DistInfo(rank=0, world=2, local_world=2)) == 2
        assert configure_threads(TrainerConfig(threads=3), DistInfo()) == 3
    finally:
        torch.set_num_threads(before)


def test_scheduled_lr_linear_and_constant() -> None:
    from model.trainer import scheduled_lr

    linear = TrainerConfig(lr=0.01, lr_schedule="linear", min_lr=1e-4)
    assert scheduled_lr(linear, 0.0) == pytest.approx(0.01)
    assert scheduled_lr(linear, 0.5) == pytest.approx(1e-4 + 0.5 * (0.01 - 1e-4))
    assert scheduled_lr(linear, 1.0) == pytest.approx(1e-4)
    assert scheduled_lr(linear, 1.5) == pytest.approx(1e-4)  # never below min_lr
    assert scheduled_lr(TrainerConfig(lr=0.01), 0.7) == 0.01
    with pytest.raises(ValueError, match="min_lr"):
        TrainerConfig(lr=0.01, min_lr=0.02)
    with pytest.raises(ValueError, match="lr_schedule"):
        TrainerConfig(lr_schedule="cosine")  # type: ignore[arg-type]


def test_linear_schedule_sets_both_optimisers_every_step(monkeypatch: pytest.MonkeyPatch) -> None:
    """2 epochs x 4 steps: step s of 8 runs at lr(s / 8) on the dense optimiser and at the same factor of
    ``sparse_lr`` on the sparse one (0.05 / 0.01 = 5 x the dense rate)."""
    import model.trainer as trainer_module

    seen: list[tuple[float, list[float], float]] = []
    real = trainer_module._set_lr

    def spy(
        config: TrainerConfig, lr: float, dense_opt: torch.optim.Optimizer | None, sparse_opt: object
    ) -> None:
        real(config, lr, dense_opt, sparse_opt)
        assert dense_opt is not None
        seen.append((lr, [g["lr"] for g in dense_opt.param_groups], sparse_opt.lr))  # type: ignore[attr-defined]

    monkeypatch.setattr(trainer_module, "_set_lr", spy)
    cfg = TrainerConfig(
        epochs=2, threads=1, device="cpu", lr=0.01, sparse_lr=0.05, lr_schedule="linear", min_lr=0.0
    )
    train(_model(), lambda epoch: [_batch()] * 4, cfg, progress=False, steps_per_epoch=4)
    assert [round(lr, 6) for lr, _, _ in seen] == [round(0.01 * (1 - s / 8), 6) for s in range(8)]
    assert all(dense == [lr] * len(dense) and sparse == pytest.approx(5 * lr) for lr, dense, sparse in seen)


def test_sparse_lr_sets_the_table_optimiser_rate() -> None:
    """The table optimiser's rate is ``sparse_lr``, or ``lr`` when it is ``None``; a negative one is refused."""
    assert TrainerConfig(lr=0.01).table_lr == 0.01
    assert TrainerConfig(lr=0.01, sparse_lr=0.2).table_lr == 0.2
    with pytest.raises(ValueError, match="sparse_lr"):
        TrainerConfig(sparse_lr=-1.0)


@pytest.mark.parametrize("align_item_grad", [True, False])
def test_alignment_reaches_item_rows_only_when_asked(align_item_grad: bool) -> None:
    weighting = make_weighting(
        "adaptive", ["intra:item", "intra:category", "inter:item-category"], instance_task="intra:item"
    )
    model = M2GRL(
        {"item": 10, "category": 4},
        [("item", "category")],
        weighting,
        dim=4,
        align_item_grad=align_item_grad,
        seed=0,
    )
    batch = M2GRLBatch(
        relations={
            "item-category": RelationBatch(
                items=torch.tensor([1, 2]),
                others=torch.tensor([0, 3]),
                negatives=torch.tensor([[1, 2], [0, 1]]),
                mask=torch.ones(2, 2),
            )
        }
    )
    total, _ = model.loss(batch)
    total.backward()
    item_grad = model.inputs["item"].take_grad()
    category_grad = model.inputs["category"].take_grad()
    assert category_grad is not None and float(category_grad[1].abs().sum()) > 0
    assert model.W["item-category"].grad is not None
    if align_item_grad:
        assert item_grad is not None and item_grad[0].tolist() == [1, 2]
    else:
        assert item_grad is None


def test_clip_groups_are_clipped_by_their_own_norm() -> None:
    """Hand-computed: the group (entry 0 of p, table a) has norm 5 and the rest (entry 1 of p, table b)
    norm 5; with clip 1 each is scaled by 1/5 apart. Without groups the one global norm is sqrt(50)."""
    p = nn.Parameter(torch.zeros(2))

    def grads() -> tuple[dict[nn.Parameter, Tensor], dict[str, tuple[Tensor, Tensor]]]:
        rows = torch.tensor([0])
        return {p: torch.tensor([3.0, 4.0])}, {
            "a": (rows, torch.tensor([[4.0]])),
            "b": (rows, torch.tensor([[3.0]])),
        }

    dense, sparse = grads()
    clip_gradients(dense, sparse, [ClipGroup(tables=("a",), entries=((p, 0),))], 1.0)
    assert torch.allclose(dense[p], torch.tensor([0.6, 0.8]), atol=1e-6)
    assert sparse["a"][1].item() == pytest.approx(0.8, abs=1e-6)
    assert sparse["b"][1].item() == pytest.approx(0.6, abs=1e-6)

    dense, sparse = grads()
    clip_gradients(dense, sparse, [], 1.0)
    s = 1 / 50**0.5
    assert torch.allclose(dense[p], torch.tensor([3 * s, 4 * s]), atol=1e-6)
    assert sparse["a"][1].item() == pytest.approx(4 * s, abs=1e-6)

    dense, sparse = grads()
    clip_gradients(dense, sparse, [ClipGroup(tables=("a",), entries=((p, 0),))], 10.0)  # both under the clip
    assert torch.equal(dense[p], torch.tensor([3.0, 4.0])) and sparse["b"][1].item() == 3.0


def test_a_clip_group_naming_an_unknown_table_is_refused() -> None:
    model = _model()
    model.clip_groups = lambda: [ClipGroup(tables=("inputs.nope",))]  # type: ignore[method-assign]
    with pytest.raises(ValueError, match="inputs.nope"):
        train(model, lambda epoch: [_batch()], CFG, progress=False)


@pytest.mark.parametrize("apart", [True, False])
def test_item_view_clipped_apart_trains_exactly_as_alone(apart: bool) -> None:
    """With the item view clipped apart (and the alignment kept out of its rows) the multi-view model's
    item tables are bit for bit the single view's; under one global clip the side views change them."""
    full = toy_inputs(sequences=80)
    alone = item_view_alone(full)
    settings = BatchSettings(window=3, batch_size=32, block_tokens=200)
    config = TrainerConfig(epochs=2, threads=1, device="cpu", sparse_optimizer="row_adagrad", sparse_lr=0.05)
    trained = {}
    for name, inputs in (("multi", full), ("single", alone)):
        tasks = [f"intra:{v}" for v in inputs.views] + [f"inter:{a}-{b}" for a, b in inputs.relations]
        model = M2GRL(
            inputs.view_sizes(),
            inputs.relations,
            make_weighting("adaptive", tasks, instance_task="intra:item"),
            dim=8,
            align_item_grad=False,
            clip_item_apart=apart,
            seed=1,
        )
        train(model, make_batch_fn(inputs, settings, seed=1), config, progress=False)
        trained[name] = model
    multi, single = trained["multi"], trained["single"]
    assert np.abs(multi.embeddings("category")).sum() > 0
    same = all(
        np.array_equal(getattr(multi, f)("item"), getattr(single, f)("item"))
        for f in ("embeddings", "context")
    )
    assert same == apart
