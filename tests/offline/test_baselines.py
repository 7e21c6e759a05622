"""Baselines: registry, a smoke test each, and a sanity check each."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from offline.baselines.base import ItemModel, load_train_data, top_n_rows
from offline.baselines.itemcf import cooccurrence_similarity, fit_itemcf
from offline.baselines.popularity import fit_popularity, reach
from offline.baselines.registry import BASELINES, UnknownBaseline, fit_baseline, get_baseline
from offline.baselines.walks import random_walks, undirected_csr
from tests.offline.eval_dataset import write_tiny_dataset


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    return load_train_data(write_tiny_dataset(tmp_path_factory.mktemp("ds") / "tiny"))


def test_registry_unknown_name_lists_valid() -> None:
    with pytest.raises(UnknownBaseline, match="valid: .*itemcf"):
        get_baseline("nope")


def test_load_train_data_shapes(tiny) -> None:  # type: ignore[no-untyped-def]
    assert tiny.n_items == 24
    assert len(tiny.user_rows) == len(tiny.item_rows) == 40 * 4
    assert set(tiny.side) == {"category"} and tiny.side["category"].shape == (24,)


def test_itemcf_hand_computed() -> None:
    # Users: u0 {0, 1}, u1 {0, 1, 2}. w0 = 1/log 3, w1 = 1/log 4.  n = [2, 2, 1].
    sim = cooccurrence_similarity(np.array([0, 0, 1, 1, 1]), np.array([0, 1, 0, 1, 2]), 3).toarray()
    w0, w1 = 1 / np.log(3), 1 / np.log(4)
    assert sim[0, 1] == pytest.approx((w0 + w1) / 2)
    assert sim[0, 2] == pytest.approx(w1 / np.sqrt(2))
    assert np.all(np.diag(sim) == 0) and np.allclose(sim, sim.T)


def test_itemcf_neighbours_cooccur(tiny) -> None:  # type: ignore[no-untyped-def]
    model = fit_itemcf(tiny, topn=5)
    assert model.topn_ids is not None
    r = sp.csr_matrix((np.ones(len(tiny.user_rows)), (tiny.user_rows, tiny.item_rows)))
    co = (r.T @ r).toarray() > 0
    rows = np.repeat(np.arange(tiny.n_items), 5)
    cols = model.topn_ids.ravel()
    real = cols >= 0
    assert real.any() and co[rows[real], cols[real]].all()
    assert not np.any(cols[real] == rows[real])


def test_popularity_lists_most_frequent_first(tiny) -> None:  # type: ignore[no-untyped-def]
    model = fit_popularity(tiny, topn=3)
    assert model.topn_ids is not None and model.topn_scores is not None
    assert model.topn_ids.shape == (24, 4)
    assert np.all(np.diff(model.topn_scores[0]) <= 0)
    assert model.topn_scores[0, 0] == reach(tiny).max()


def test_popularity_ranks_by_distinct_users_not_events(tiny) -> None:  # type: ignore[no-untyped-def]
    # item row 0: one user, 5 events; row 1: 3 users, one event each; row 2: 2 users (one twice)
    data = dataclasses.replace(
        tiny,
        items=np.array([10, 11, 12]),
        counts=np.array([5, 3, 3]),
        user_rows=np.array([0, 0, 0, 0, 0, 1, 2, 3, 1, 2, 2]),
        item_rows=np.array([0, 0, 0, 0, 0, 1, 1, 1, 2, 2, 2]),
    )
    assert reach(data).tolist() == [1, 3, 2]
    model = fit_popularity(data, topn=5)
    assert model.topn_ids is not None and model.topn_scores is not None
    assert model.topn_ids[0].tolist() == [1, 2, 0] and model.topn_scores[0].tolist() == [3.0, 2.0, 1.0]


def test_top_n_rows_orders_and_pads() -> None:
    ids, scores = top_n_rows(np.array([0, 3, 3]), np.array([4, 1, 2]), np.array([0.5, 0.9, 0.5]), 2, 2)
    assert ids.tolist() == [[1, 2], [-1, -1]]
    assert scores[0].tolist() == pytest.approx([0.9, 0.5])


def test_walks_follow_edges_and_are_seeded() -> None:
    adj = undirected_csr(np.array([0, 1, 2, 3, 3]), np.array([1, 2, 3]), 4)
    walks = random_walks(adj, walks_per_node=3, walk_length=6, p=1.0, q=0.5, seed=1)
    assert len(walks) == 12
    w = np.stack(walks)
    dense = adj.toarray() > 0
    assert dense[w[:, :-1], w[:, 1:]].all()
    again = np.stack(random_walks(adj, walks_per_node=3, walk_length=6, p=1.0, q=0.5, seed=1))
    assert np.array_equal(w, again)


def test_node2vec_low_q_moves_outward_more_than_deepwalk() -> None:
    # A path graph 0-1-2-...-9: with q = 0.5 walks return less often, so they go farther.
    n = 10
    adj = undirected_csr(np.concatenate([np.arange(n), [n - 1]]), np.arange(1, n), n)

    def spread(q: float) -> float:
        w = np.stack(random_walks(adj, walks_per_node=50, walk_length=8, q=q, seed=0))
        return float(np.abs(w[:, -1] - w[:, 0]).mean())

    assert spread(0.25) > spread(1.0)


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_every_baseline_smoke(tiny, name: str) -> None:  # type: ignore[no-untyped-def]
    model = fit_baseline(name, tiny, seed=0)
    assert isinstance(model, ItemModel)
    if model.vectors is not None:
        assert model.vectors.shape[0] == tiny.n_items and np.isfinite(model.vectors).all()
    else:
        assert model.topn_ids is not None and model.topn_ids.shape[0] == tiny.n_items


@pytest.mark.parametrize("name", ["deepwalk", "node2vec"])
def test_walk_embeddings_cluster_by_category(tiny, name: str) -> None:  # type: ignore[no-untyped-def]
    model = fit_baseline(name, tiny, seed=0)
    assert model.vectors is not None
    v = model.vectors / np.linalg.norm(model.vectors, axis=1, keepdims=True)
    sims = v @ v.T
    np.fill_diagonal(sims, -np.inf)
    nearest = sims.argmax(axis=1)
    cat = tiny.side["category"]
    # Items only co-occur within their category: their nearest neighbour should share it.
    assert (cat[nearest] == cat).mean() > 0.9


def test_item_model_requires_one_representation() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        ItemModel()
    with pytest.raises(ValueError, match="topn_scores"):
        ItemModel(topn_ids=np.zeros((2, 2), dtype=np.int32))


def test_load_train_data_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="prepared dataset"):
        load_train_data(tmp_path)
