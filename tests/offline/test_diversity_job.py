"""The diversity metric job end to end on tiny dataset/model folders written per ``core.layout``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.layout import DatasetLayout, MetricLayout, ModelLayout
from core.manifests import MetricManifest
from model.artifact import M2GRLArtifact
from model.config import MetricConfig
from offline.jobs.diversity import instance_input, train_metric_model

N_ITEMS, DIM_I, DIM_IC = 24, 6, 3
# item id = 100 + row; 4 categories of 6 items
ITEM_CATEGORY = np.repeat(np.arange(4), 6) + 50


def _write_folders(root: Path, events: pd.DataFrame) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    dataset, model = DatasetLayout(root / "dataset"), ModelLayout(root / "model")
    dataset.root.mkdir(parents=True)
    events.to_parquet(dataset.events)
    e_i = rng.normal(size=(N_ITEMS, DIM_I)).astype(np.float32)
    e_ic = rng.random((N_ITEMS, DIM_IC)).astype(np.float32)
    categories = np.unique(ITEM_CATEGORY)
    e_c = rng.normal(size=(len(categories), DIM_I)).astype(np.float32)
    M2GRLArtifact(
        views=["item", "category"], relations=[("item", "category")],
        embeddings={"item": e_i, "category": e_c}, context={"item": 0 * e_i, "category": 0 * e_c},
        relation_matrices={"item-category": np.zeros((DIM_IC, DIM_I), dtype=np.float32)},
        relational={"item-category": {"item": e_ic, "category": np.zeros((len(categories), DIM_IC), np.float32)}},
        vocab={"item": 100 + np.arange(N_ITEMS, dtype=np.int64), "category": categories.astype(np.int64)},
        attributes={"category": ITEM_CATEGORY.astype(np.int64)},
    ).save(model.root)  # fmt: skip
    return dataset.root, model.root


def _events() -> pd.DataFrame:
    """Users alternate between category 50 and 51 items in one session (planted discoveries 0<->6, 1<->7...),
    plus a test-split event that must be ignored and an unknown item."""
    rows = []
    for user in range(6):
        for step in range(8):
            item = 100 + (step % 2) * 6 + user % 3  # rows (u%3) and (6 + u%3)
            rows.append((user, item, 1000 * user + step, 50 + step % 2, user, "train"))
        rows.append((user, 100 + 12, 1000 * user + 99, 52, user, "test"))
    rows.append((0, 999, 5, 53, 0, "train"))  # not in the vocabulary
    return pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp", "category_id", "session", "split"])


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path, MetricConfig]:
    root = tmp_path_factory.mktemp("div")
    dataset, model = _write_folders(root, _events())
    config = MetricConfig(epochs=4, batch_size=16, lr=0.05, negatives_per_positive=3, seed=1)
    out = train_metric_model(dataset, model, root / "metric", config)
    return dataset, model, out, config


def test_job_writes_metric_layout(trained: tuple[Path, Path, Path, MetricConfig]) -> None:
    _, model, out, _ = trained
    layout = MetricLayout(out)
    z = np.load(layout.diversity)
    assert z.dtype == np.float32 and z.shape == (N_ITEMS, DIM_I + DIM_IC)
    assert np.load(layout.factor("i")).shape == (DIM_I, DIM_I)
    assert np.load(layout.factor("ic")).shape == (DIM_IC, DIM_IC)
    manifest = MetricManifest.read(out)
    assert manifest.source_model == str(model.resolve())
    # 6 users x 7 consecutive cross-category pairs, minus the one pair of user 0 that the unknown item
    # (timestamp 5, between steps 5 and 6) breaks into two pairs with an unknown end
    assert manifest.model_extra["counts"]["positive_pairs"] == 6 * 7 - 1
    assert manifest.config["seed"] == 1
    assert json.loads(layout.manifest.read_text())["kind"] == "metric"


def test_saved_z_reproduces_eq11_with_saved_factors(trained: tuple[Path, Path, Path, MetricConfig]) -> None:
    _, model, out, config = trained
    layout, m = MetricLayout(out), ModelLayout(model)
    l_i, l_ic = np.load(layout.factor("i")), np.load(layout.factor("ic"))
    e_i = instance_input(np.load(m.embeddings("item")), config.instance_input)
    e_ic = np.load(m.relational("item-category", "item"))
    z = np.load(layout.diversity)
    a, b = np.arange(0, 12), np.arange(12, 24)
    d_i = np.einsum("nd,de,ne->n", e_i[a] - e_i[b], l_i.T @ l_i, e_i[a] - e_i[b])
    d_ic = np.einsum("nd,de,ne->n", e_ic[a] - e_ic[b], l_ic.T @ l_ic, e_ic[a] - e_ic[b])
    np.testing.assert_allclose(((z[a] - z[b]) ** 2).sum(1), d_i + d_ic, rtol=1e-4, atol=1e-5)


def test_metric_stays_psd_and_training_separates_pairs(
    trained: tuple[Path, Path, Path, MetricConfig],
) -> None:
    _, _, out, _ = trained
    layout = MetricLayout(out)
    for name in ("i", "ic"):
        factor = np.load(layout.factor(name)).astype(np.float64)
        assert np.linalg.eigvalsh(factor.T @ factor).min() >= -1e-6
    manifest = MetricManifest.read(out)
    assert min(manifest.model_extra["min_eigenvalue"].values()) >= -1e-6
    z = np.load(layout.diversity)
    d = ((z[:, None, :] - z[None, :, :]) ** 2).sum(-1)
    planted = np.mean([d[r, 6 + r] for r in range(3)])
    rest = d[np.triu_indices(N_ITEMS, 1)].mean()
    assert planted < rest


def test_job_refuses_to_overwrite_and_reports_missing_inputs(
    trained: tuple[Path, Path, Path, MetricConfig], tmp_path: Path
) -> None:
    dataset, model, out, _ = trained
    with pytest.raises(FileExistsError, match="already exists"):
        train_metric_model(dataset, model, out, MetricConfig(epochs=1))
    broken = tmp_path / "model"
    shutil.copytree(model, broken)
    ModelLayout(broken).relational("item-category", "item").unlink()
    with pytest.raises(ValueError, match="item-category/item.npy is missing"):
        train_metric_model(dataset, broken, tmp_path / "m", MetricConfig(epochs=1))
    assert not (tmp_path / "m").exists()


def test_job_without_discovery_pairs_fails_clearly(tmp_path: Path) -> None:
    events = _events()
    events["item_id"] = 100  # every consecutive pair is the same item, same category
    dataset, model = _write_folders(tmp_path, events)
    with pytest.raises(ValueError, match="no discovery pair"):
        train_metric_model(dataset, model, tmp_path / "metric", MetricConfig(epochs=1))
    assert not (tmp_path / "metric").exists()


def test_evaluate_diversity_serves_both_modes_and_reports_the_table(tmp_path: Path) -> None:
    from offline.evaluation.config import ProtocolConfig
    from offline.evaluation.diversity import DIVERSITY_ROWS, evaluate_diversity
    from offline.evaluation.protocol import build_eval_data
    from offline.evaluation.report import render_markdown

    events = _events()
    # a user without test events who saw every item: makes every candidate's category known to the protocol
    every = pd.DataFrame(
        {"user_id": 50, "item_id": 100 + np.arange(N_ITEMS), "timestamp": np.arange(N_ITEMS),
         "category_id": ITEM_CATEGORY, "session": 50, "split": "train"}
    )  # fmt: skip
    events = pd.concat([events, every], ignore_index=True)
    dataset, model = _write_folders(tmp_path, events)
    data = build_eval_data(
        events, 100 + np.arange(N_ITEMS), category_column="category_id", config=ProtocolConfig(ks=(50,))
    )
    config = MetricConfig(epochs=2, batch_size=16, negatives_per_positive=2)
    out = evaluate_diversity(dataset, {3: model}, tmp_path / "work", data, metric_config=config)
    assert (tmp_path / "work" / "metric-seed3" / "diversity.npy").exists()
    rows = out["seeds"]["3"]
    assert set(rows) == set(DIVERSITY_ROWS) == set(out["summary"])
    # the filtered rows never return the trigger's or a recently seen category
    assert rows["general+filter"]["NewCategoryShare@50"] == 1.0
    assert rows["diversity"]["NewCategoryShare@50"] == 1.0
    assert rows["general"]["NewCategoryShare@50"] < 1.0
    # one seed: the summary is that seed's value with zero spread
    for row, metrics in out["summary"].items():
        for metric, (mean, std) in metrics.items():
            assert mean == pytest.approx(rows[row][metric]) and std == 0.0
    report = {
        "dataset": "t", "protocol_text": "p", "protocol": {"ks": [50]}, "users": 6, "discovery_users": 6,
        "catalogue": N_ITEMS, "methods": {}, "diversity": out,
    }  # fmt: skip
    md = render_markdown(report)
    assert "## Diversity (section 6.1)" in md and "| general+filter |" in md and "| diversity |" in md


def test_an_interrupted_job_resumes_to_the_same_factors_and_cleans_its_checkpoints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The metric job trains through the shared loop: per-epoch checkpoints next to the output, a
    resumed run equal to an uninterrupted one, a resume under another config refused."""
    import offline.jobs.diversity as job

    dataset, model = _write_folders(tmp_path, _events())
    config = MetricConfig(epochs=3, batch_size=16, lr=0.05, negatives_per_positive=3, seed=1)
    straight = train_metric_model(dataset, model, tmp_path / "straight", config)
    assert not ModelLayout(straight).checkpoints.exists()

    out = tmp_path / "resumed"
    with monkeypatch.context() as patch:  # crash after two epochs' checkpoints, before anything is written

        def crash(*args: object, **kwargs: object) -> None:
            raise RuntimeError("killed")

        patch.setattr(job, "diversity_embeddings", crash)
        with pytest.raises(RuntimeError, match="killed"):
            train_metric_model(dataset, model, out, config.replace(epochs=2))
    assert not out.exists()
    assert sorted(p.name for p in ModelLayout(out).checkpoints.glob("epoch-*.pt")) == [
        "epoch-0001.pt",
        "epoch-0002.pt",
    ]
    with pytest.raises(ValueError, match="cannot resume"):
        train_metric_model(dataset, model, out, config.replace(lr=0.01), resume=True)
    train_metric_model(dataset, model, out, config, resume=True)
    assert len(json.loads(MetricLayout(out).manifest.read_text())["history"]) == 3
    np.testing.assert_array_equal(
        np.load(MetricLayout(out).diversity), np.load(MetricLayout(straight).diversity)
    )
    assert not ModelLayout(out).checkpoints.exists()
