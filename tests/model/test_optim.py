"""Row-sparse tables and optimisers: only touched rows move; lazy Adam matches dense Adam on them."""

from __future__ import annotations

import pytest
import torch

from model.optim import LazyAdam, RowAdagrad, SparseEmbedding, make_sparse_optimizer


def _step(opt_cls: type, rows: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    table = SparseEmbedding(torch.randn(6, 3))
    before = table.weight.clone()
    opt = opt_cls({"t": table}, 0.1)
    out = table.gather(torch.tensor(rows))
    (out**2).sum().backward()
    grad = table.take_grad()
    assert grad is not None
    opt.step("t", *grad)
    return before, table.weight


@pytest.mark.parametrize("opt_cls", [LazyAdam, RowAdagrad])
def test_only_touched_rows_change(opt_cls: type) -> None:
    before, after = _step(opt_cls, [1, 4, 1])
    changed = (before != after).any(dim=1)
    assert changed.tolist() == [False, True, False, False, True, False]


def test_take_grad_coalesces_repeated_rows() -> None:
    table = SparseEmbedding(torch.ones(4, 2))
    a = table.gather(torch.tensor([2, 0]))
    b = table.gather(torch.tensor([2]))
    (a.sum() + 3 * b.sum()).backward()
    rows, grad = table.take_grad()  # type: ignore[misc]
    assert rows.tolist() == [0, 2]
    assert grad.tolist() == [[1.0, 1.0], [4.0, 4.0]]
    assert table.take_grad() is None


def test_lazy_adam_equals_dense_adam_on_rows_touched_every_step() -> None:
    torch.manual_seed(0)
    init = torch.randn(3, 2)
    table = SparseEmbedding(init)
    lazy = LazyAdam({"t": table}, 0.05)
    dense = torch.nn.Parameter(init.clone())
    adam = torch.optim.Adam([dense], lr=0.05)
    target = torch.randn(3, 2)
    for _ in range(5):
        out = table.gather(torch.arange(3))
        ((out - target) ** 2).sum().backward()
        lazy.step("t", *table.take_grad())  # type: ignore[misc]
        adam.zero_grad()
        ((dense - target) ** 2).sum().backward()
        adam.step()
    assert torch.allclose(table.weight, dense.detach(), atol=1e-5)


def test_optimizer_state_round_trip() -> None:
    table = SparseEmbedding(torch.zeros(2, 2))
    opt = LazyAdam({"t": table}, 0.1)
    opt.step("t", torch.tensor([1]), torch.ones(1, 2))
    state = opt.state_dict()
    fresh = LazyAdam({"t": SparseEmbedding(torch.zeros(2, 2))}, 0.1)
    fresh.load_state_dict(state)
    assert torch.equal(fresh.state["t"]["m"], opt.state["t"]["m"])
    assert fresh.state["t"]["t"].tolist() == [0.0, 1.0]


def test_unknown_optimizer_lists_valid_ones() -> None:
    with pytest.raises(ValueError, match="lazy_adam, row_adagrad"):
        make_sparse_optimizer("sgd", {}, 0.1)
