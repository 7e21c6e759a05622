"""Warm start: rows of known ids copied exactly, new items placed at their category's mean, the rest
untouched; and the train job's ``init_from`` end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from model.artifact import M2GRLArtifact
from model.config import M2GRLConfig
from model.m2grl import M2GRL
from model.warm_start import warm_start
from model.weighting import make_weighting
from offline.jobs.train import train_m2grl

DIM = 3
RELATION = "item-category"


def new_model() -> M2GRL:
    tasks = ["intra:item", "intra:category", f"inter:{RELATION}"]
    weighting = make_weighting("adaptive", tasks, instance_task="intra:item")
    return M2GRL({"item": 5, "category": 2}, [("item", "category")], weighting, dim=DIM, seed=3)


def previous_artifact() -> M2GRLArtifact:
    # yesterday: items 10, 20, 30 and categories 1, 2; every vector names its id in its first cell
    items = np.array([10, 20, 30], dtype=np.int64)
    cats = np.array([1, 2], dtype=np.int64)
    emb = {"item": np.array([[10, 0, 0], [20, 2, 0], [30, 4, 0]], dtype=np.float32),
           "category": np.array([[1, 1, 1], [2, 2, 2]], dtype=np.float32)}  # fmt: skip
    ctx = {view: -arr for view, arr in emb.items()}
    w = np.arange(DIM * DIM, dtype=np.float32).reshape(DIM, DIM)
    return M2GRLArtifact(
        views=["item", "category"], relations=[("item", "category")], embeddings=emb, context=ctx,
        relation_matrices={RELATION: w}, relational={}, vocab={"item": items, "category": cats},
        task_weights={"intra:item": {"log_sigma2": 0.5}, f"inter:{RELATION}": {"log_sigma2": -1.0}},
    )  # fmt: skip


def test_rows_are_copied_placed_or_left_fresh() -> None:
    model = new_model()
    fresh = model.embeddings("item").copy()
    # today: items 20, 40 (new), 10, 30, 50 (new, no category); categories 2, 1 (order swapped)
    vocab = {"item": np.array([20, 40, 10, 30, 50]), "category": np.array([2, 1])}
    links = {RELATION: np.array([0, 0, 1, 0, -1])}  # 20, 40, 30 -> category 2; 10 -> category 1
    counts = warm_start(model, previous_artifact(), vocab, links)
    assert counts == {
        "item": {"copied": 3, "placed": 1, "fresh": 1},
        "category": {"copied": 2, "placed": 0, "fresh": 0},
    }
    items, context = model.embeddings("item"), model.context("item")
    np.testing.assert_array_equal(items[[0, 2, 3]], [[20, 2, 0], [10, 0, 0], [30, 4, 0]])
    np.testing.assert_array_equal(context[[0, 2, 3]], -items[[0, 2, 3]])
    np.testing.assert_allclose(items[1], [25, 3, 0])  # the mean of 20 and 30, its category's known items
    np.testing.assert_array_equal(items[4], fresh[4])  # no side view: its random start
    assert (context[[1, 4]] == 0).all()  # new rows' output vectors start at zero, as in a cold start
    np.testing.assert_array_equal(model.embeddings("category"), [[2, 2, 2], [1, 1, 1]])
    np.testing.assert_array_equal(
        model.W[RELATION].detach().numpy(), previous_artifact().relation_matrices[RELATION]
    )
    sigma = model.weighting.log_sigma2_param.detach().numpy()  # type: ignore[union-attr]
    np.testing.assert_allclose(sigma, [0.5, 0.0, -1.0])  # intra:category had no state: its start


def test_another_dimension_is_refused() -> None:
    tasks = ["intra:item"]
    model = M2GRL({"item": 2}, [], make_weighting("uniform", tasks, instance_task="intra:item"), dim=4)
    with pytest.raises(ValueError, match="the previous model has dim 3, this config 4"):
        warm_start(model, previous_artifact(), {"item": np.array([10, 20])}, {})


def test_train_job_warm_starts_from_a_model_folder(planted: Path, tmp_path: Path) -> None:
    fast = {"threads": 1, "device": "cpu", "shared_negatives": 64, "batch_size": 512}
    first = train_m2grl(planted, tmp_path / "day1", M2GRLConfig(epochs=1, **fast), progress=False)
    second = train_m2grl(
        planted, tmp_path / "day2", M2GRLConfig(epochs=1, **fast), progress=False, init_from=first
    )
    art = M2GRLArtifact.load(second)
    warm = art.manifest.model_extra["warm_start"]
    assert warm["from"] == str(first.resolve())
    n_items = len(art.vocab["item"])
    assert warm["rows"]["item"] == {"copied": n_items, "placed": 0, "fresh": 0}
    with pytest.raises(ValueError, match="--init-from: .* is not a readable model folder"):
        train_m2grl(planted, tmp_path / "day3", M2GRLConfig(epochs=1, **fast), progress=False,
                    init_from=tmp_path / "missing")  # fmt: skip
