"""Learned baselines (LINE, EGES, GRU4Rec, YouTube-DNN, GraphSAGE): hand-computed pieces, a smoke test,
a sanity check and seeding for each, on the tiny dataset of ``eval_dataset.py``.

The tiny dataset has 4 categories of 6 items and every user stays in one category, so a working model
puts an item's nearest neighbour (under the metric it is served with) in its own category; chance is
5/23 ~ 0.22. Sanity checks use small batches (the tiny data give one step per epoch at the defaults).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from core.config import ConfigError
from offline.baselines.base import ItemModel, TrainData, load_train_data
from offline.baselines.deepwalk import WalkSettings
from offline.baselines.eges import EgesSettings, attention_combine, fit_eges
from offline.baselines.graphsage import (
    GraphSage,
    GraphSageSettings,
    build_batch,
    compact,
    fit_graphsage,
    make_sage_batches,
    sample_neighbours,
    walk_pairs,
)
from offline.baselines.gru4rec import Gru4RecSettings, fit_gru4rec, sequence_windows
from offline.baselines.learned import fit_with_trainer, sampled_softmax_loss, symmetric_edges
from offline.baselines.line import LineSettings, fit_line, line_loss
from offline.baselines.registry import BASELINES, fit_baseline
from offline.baselines.walks import undirected_csr
from offline.baselines.youtube_dnn import YoutubeDnnSettings, fit_youtube_dnn, prefix_histories
from tests.offline.eval_dataset import write_tiny_dataset

LEARNED = ("line", "eges", "gru4rec", "youtube-dnn", "graphsage")

#: name -> (fit function, settings for the tiny data, vector dimension)
TINY: dict[str, tuple[Callable[..., ItemModel], Any, int]] = {
    "line": (fit_line, LineSettings(batch_size=16, epochs=40), 64),
    "eges": (fit_eges, EgesSettings(batch_size=32, epochs=20), 64),
    "gru4rec": (fit_gru4rec, Gru4RecSettings(batch_size=4, epochs=10), 64),
    "youtube-dnn": (fit_youtube_dnn, YoutubeDnnSettings(batch_size=16, epochs=10), 64),
    "graphsage": (fit_graphsage, GraphSageSettings(batch_size=64, epochs=5), 64),
}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TrainData:
    return load_train_data(write_tiny_dataset(tmp_path_factory.mktemp("ds") / "tiny"))


@pytest.fixture(scope="module")
def fitted(tiny: TrainData) -> dict[str, ItemModel]:
    """Every learned baseline fitted once on the tiny data with seed 0 (shared by the checks below)."""
    return {name: fn(tiny, seed=0, settings=settings) for name, (fn, settings, _) in TINY.items()}


def served_scores(model: ItemModel) -> np.ndarray:
    """Item x item scores under the model's serving metric ("ip" or "cosine"), diagonal excluded."""
    assert model.metric in ("ip", "cosine")
    assert model.vectors is not None
    v = model.vectors.astype(np.float64)
    if model.metric == "cosine":
        v = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
    scores = v @ v.T
    np.fill_diagonal(scores, -np.inf)
    return scores


def nearest_same_category(model: ItemModel, category: np.ndarray) -> float:
    return float((category[served_scores(model).argmax(axis=1)] == category).mean())


# ------------------------------------------------------------------------------------ registry / smoke


def test_learned_baselines_are_registered() -> None:
    assert set(LEARNED) <= set(BASELINES)


@pytest.mark.parametrize("name", LEARNED)
def test_smoke_default_settings(tiny: TrainData, name: str) -> None:
    model = fit_baseline(name, tiny, seed=0)
    dim = TINY[name][2]
    assert model.vectors is not None and model.topn_ids is None
    assert model.vectors.shape == (tiny.n_items, dim) and model.vectors.dtype == np.float32
    assert np.isfinite(model.vectors).all()
    assert np.abs(model.vectors).sum(axis=1).min() > 0  # every tiny item has a trained vector


@pytest.mark.parametrize("name", LEARNED)
def test_nearest_neighbour_shares_the_planted_category(
    tiny: TrainData, fitted: dict[str, ItemModel], name: str
) -> None:
    model = fitted[name]
    assert model.vectors is not None and np.isfinite(model.vectors).all()
    assert model.vectors.shape == (tiny.n_items, TINY[name][2])
    # Chance is ~0.22; a model that learned nothing (or scored the wrong table) stays near it.
    assert nearest_same_category(model, tiny.side["category"]) >= 0.9


@pytest.mark.parametrize("name", LEARNED)
def test_same_seed_same_vectors_other_seed_differs(
    tiny: TrainData, fitted: dict[str, ItemModel], name: str
) -> None:
    fn, settings, _ = TINY[name]
    again = fn(tiny, seed=0, settings=settings)
    other = fn(tiny, seed=1, settings=settings)
    first = fitted[name].vectors
    assert first is not None and again.vectors is not None and other.vectors is not None
    assert np.array_equal(first, again.vectors)
    assert not np.allclose(first, other.vectors)


# ---------------------------------------------------------------------------------------------- LINE


def _log_sigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x))


def test_line_loss_hand_computed() -> None:
    # Two edges, one negative each: u = [[1, 0], [0, 2]], u'_dst = [[1, 1], [0, 1]], u'_neg = [[2, 0]], [[1, 1]].
    vertex = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    context = torch.tensor([[1.0, 1.0], [0.0, 1.0]])
    negatives = torch.tensor([[[2.0, 0.0]], [[1.0, 1.0]]])
    edge0 = -_log_sigmoid(1.0) - _log_sigmoid(-2.0)
    edge1 = -_log_sigmoid(2.0) - _log_sigmoid(-2.0)
    assert float(line_loss(vertex, context, negatives)) == pytest.approx((edge0 + edge1) / 2, rel=1e-6)
    with pytest.raises(ValueError, match=r"\[B, K, d\]"):
        line_loss(vertex, context, negatives[:, 0])


def test_symmetric_edges_sums_both_directions_and_drops_self_loops() -> None:
    # 0 -> 1 (w 2), 1 -> 0 (w 3), 1 -> 2 (w 1), 2 -> 2 (self loop, dropped).
    data = TrainData(
        items=np.arange(3),
        counts=np.ones(3, dtype=np.int64),
        seq_indptr=np.array([0]),
        seq_tokens=np.zeros(0, dtype=np.int32),
        graph_indptr=np.array([0, 1, 3, 4]),
        graph_indices=np.array([1, 0, 2, 2], dtype=np.int32),
        graph_weights=np.array([2.0, 3.0, 1.0, 5.0], dtype=np.float32),
        user_rows=np.zeros(0, dtype=np.int64),
        item_rows=np.zeros(0, dtype=np.int64),
        side={},
        attributes={},
    )
    src, dst, w = symmetric_edges(data)
    assert list(zip(src.tolist(), dst.tolist(), w.tolist(), strict=True)) == [
        (0, 1, 5.0),
        (1, 0, 5.0),
        (1, 2, 1.0),
        (2, 1, 1.0),
    ]


def test_line_isolated_items_get_zero_vectors(tiny: TrainData) -> None:
    # Drop every edge touching row 0: LINE has no signal for it.
    src = np.repeat(np.arange(tiny.n_items), np.diff(tiny.graph_indptr))
    keep = (src != 0) & (tiny.graph_indices != 0)
    indptr = np.concatenate([[0], np.cumsum(np.bincount(src[keep], minlength=tiny.n_items))])
    data = replace(
        tiny,
        graph_indptr=indptr.astype(np.int64),
        graph_indices=tiny.graph_indices[keep],
        graph_weights=tiny.graph_weights[keep],
    )
    model = fit_line(data, seed=0, settings=LineSettings(epochs=1))
    assert model.vectors is not None
    assert not model.vectors[0].any() and model.vectors[1:].any(axis=1).all()


# ---------------------------------------------------------------------------------------------- EGES


def test_eges_attention_combine_hand_computed() -> None:
    # Row 0: weights exp(0) : exp(ln 3) = 1/4 : 3/4. Row 1: its side view is unknown -> the item alone.
    views = torch.tensor([[[4.0, 0.0], [0.0, 8.0]], [[1.0, 2.0], [100.0, 100.0]]])
    logits = torch.tensor([[0.0, math.log(3.0)], [5.0, 0.0]])
    known = torch.tensor([[True, True], [True, False]])
    out = attention_combine(views, logits, known)
    assert out.tolist() == [pytest.approx([1.0, 6.0]), pytest.approx([1.0, 2.0])]


def test_eges_side_information_places_cold_items(tiny: TrainData) -> None:
    # One item per category never occurs in a training sequence, so its own vector never trains; its
    # category embedding does (through the other items), so EGES still serves it next to its category.
    cat = tiny.side["category"]
    cold = np.array([np.flatnonzero(cat == c)[0] for c in range(4)])
    seq_of = np.repeat(np.arange(len(tiny.seq_indptr) - 1), np.diff(tiny.seq_indptr))
    keep = ~np.isin(tiny.seq_tokens, cold)
    indptr = np.concatenate([[0], np.cumsum(np.bincount(seq_of[keep], minlength=len(tiny.seq_indptr) - 1))])
    data = replace(tiny, seq_indptr=indptr.astype(np.int64), seq_tokens=tiny.seq_tokens[keep])
    model = fit_eges(data, seed=0, settings=EgesSettings(batch_size=32, epochs=20))
    nearest = served_scores(model)[cold].argmax(axis=1)
    assert (cat[nearest] == cat[cold]).all()
    # Without the side view the cold items are noise: the check above is about side information.
    blind = fit_eges(replace(data, side={}), seed=0, settings=EgesSettings(batch_size=32, epochs=20))
    assert (cat[served_scores(blind)[cold].argmax(axis=1)] == cat[cold]).mean() < 1.0


# ------------------------------------------------------------------------------- GRU4Rec, YouTube-DNN


def test_sampled_softmax_loss_hand_computed() -> None:
    # q = [1, 0]. Example 0: target logit 2, pool logits 0 and 1.5; example 1: target logit 0.5 + 1,
    # its first pool item is its own target (accidental hit) and is dropped.
    query = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    positive = torch.tensor([[2.0, 0.0], [0.0, 0.5]])
    pos_bias = torch.tensor([0.0, 1.0])
    negatives = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
    neg_bias = torch.tensor([0.0, 0.5])
    hits = torch.tensor([[False, False], [True, False]])
    ex0 = math.log(math.exp(2.0) + math.exp(0.0) + math.exp(1.5)) - 2.0
    ex1 = math.log(math.exp(1.5) + math.exp(0.5)) - 1.5
    loss = sampled_softmax_loss(query, positive, negatives, pos_bias, neg_bias, hits)
    assert float(loss) == pytest.approx((ex0 + ex1) / 2, rel=1e-6)


def test_sequence_windows_hand_computed() -> None:
    # Sequences [0 1 2], [3], [4 5 6 7 8]; windows of 2.
    inputs, targets = sequence_windows(np.array([0, 3, 4, 9]), np.arange(9, dtype=np.int32), 2)
    assert inputs.tolist() == [[0, 1], [4, 5], [6, 7]]
    assert targets.tolist() == [[1, 2], [5, 6], [7, 8]]
    inputs, targets = sequence_windows(np.array([0, 4]), np.arange(4, dtype=np.int32), 3)
    assert inputs.tolist() == [[0, 1, 2]] and targets.tolist() == [[1, 2, 3]]
    inputs, targets = sequence_windows(np.array([0, 5]), np.arange(5, dtype=np.int32), 3)
    assert inputs.tolist() == [[0, 1, 2], [3, -1, -1]] and targets.tolist() == [[1, 2, 3], [4, -1, -1]]


def test_prefix_histories_hand_computed() -> None:
    # Sequences [5 6 7], [8], [9 10]; histories of up to 2, most recent first.
    history, target = prefix_histories(np.array([0, 3, 4, 6]), np.array([5, 6, 7, 8, 9, 10]), 2)
    assert history.tolist() == [[5, -1], [6, 5], [9, -1]]
    assert target.tolist() == [6, 7, 10]


# ----------------------------------------------------------------------------------------- GraphSAGE


def _path_model() -> tuple[GraphSage, sp.csr_matrix]:
    """Path 0 - 1 - 2, features [[1, 0], [0, 1], [1, 1]], layers that copy one coordinate each."""
    adj = undirected_csr(np.array([0, 1, 2, 2]), np.array([1, 2]), 3)
    model = GraphSage(3, feature_dim=2, dims=(1, 1), seed=0)
    with torch.no_grad():
        model.features.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
        for layer, w in ((model.self1, [[1.0, 0.0]]), (model.neigh1, [[0.0, 1.0]])):
            layer.weight.copy_(torch.tensor(w))
        for layer, w in ((model.self2, [[1.0, 0.0]]), (model.neigh2, [[0.0, 1.0]])):
            layer.weight.copy_(torch.tensor(w))
    return model, adj


def test_graphsage_mean_aggregator_hand_computed() -> None:
    model, adj = _path_model()
    # Layer 1: h1 = relu([x_v[0]; mean_nbr x[1]]) = [1, 1], [0, 0.5], [1, 1].
    # Layer 2: h2 = [h1_v[0]; mean_nbr h1[1]] = [1, 0.5], [0, 1], [1, 0.5]; then unit length.
    z = model.vectors(adj)
    s = 1 / math.sqrt(1.25)
    assert z.tolist() == [pytest.approx([s, 0.5 * s]), pytest.approx([0.0, 1.0]), pytest.approx([s, 0.5 * s])]


def test_graphsage_batch_graph_matches_full_graph_when_sampling_is_exact() -> None:
    # On a perfect matching (0-1, 2-3) every node has one neighbour, so every sample is exact and the
    # batch's remapped local computation graph must reproduce the full-graph vectors row for row.
    adj = undirected_csr(np.array([0, 1, 1, 2, 2]), np.array([1, 3]), 4)
    model = GraphSage(4, feature_dim=3, dims=(2, 2), seed=3)
    batch = build_batch(
        adj, np.array([0, 3]), np.array([1, 2]), np.array([2]), (3, 2), np.random.default_rng(0)
    )
    z = model.embed(batch).detach().numpy()
    full = model.vectors(adj)
    nodes = batch.feature_rows.numpy()  # all 4 nodes are in the batch's computation graph
    assert sorted(nodes.tolist()) == [0, 1, 2, 3]
    assert np.allclose(z[batch.u.numpy()], full[[0, 3]], atol=1e-6)
    assert np.allclose(z[batch.v.numpy()], full[[1, 2]], atol=1e-6)
    assert np.allclose(z[batch.negatives.numpy()], full[[2]], atol=1e-6)


def test_graphsage_neighbour_sampling_and_walk_pairs_follow_edges() -> None:
    adj = undirected_csr(np.array([0, 1, 2, 3, 3, 3]), np.array([1, 2, 3]), 5)  # path 0-1-2-3, 4 isolated
    dense = adj.toarray() > 0
    nodes = np.array([0, 1, 2, 3, 4, 1])
    nbr = sample_neighbours(adj, nodes, 7, np.random.default_rng(0))
    assert nbr.shape == (6, 7)
    assert dense[np.repeat(nodes[:4], 7), nbr[:4].ravel()].all()
    assert (nbr[4] == 4).all()  # isolated: itself
    start, other = walk_pairs(adj, 3, 4, seed=0)
    assert len(start) and (start != other).all() and not np.isin(4, start)
    # Walk positions 1..3 are at most 3 hops from the start.
    assert (np.abs(start - other) <= 3).all()
    unique, pos = compact(np.array([3, 1, 3, 0]), 5)
    assert unique.tolist() == [0, 1, 3] and pos.tolist() == [2, 1, 2, 0]


def test_graphsage_training_lowers_the_loss(tiny: TrainData) -> None:
    s = GraphSageSettings(batch_size=64, epochs=5)
    adj = undirected_csr(tiny.graph_indptr, tiny.graph_indices, tiny.n_items)
    model = GraphSage(tiny.n_items, feature_dim=s.feature_dim, dims=s.dims, seed=0)
    steps, batches = make_sage_batches(adj, s, seed=0)
    result = fit_with_trainer(model, batches, epochs=s.epochs, lr=s.lr, seed=0, steps_per_epoch=steps)
    losses = result.epoch_losses["total"]
    assert losses[-1] < losses[0] - 0.1


@pytest.mark.parametrize(
    ("settings", "changes", "field"),
    [
        (LineSettings, {"dim": 0}, "dim"),
        (LineSettings, {"neg_power": -0.5}, "neg_power"),
        (EgesSettings, {"shared_negatives": 0}, "shared_negatives"),
        (Gru4RecSettings, {"lr": 0.0}, "lr"),
        (YoutubeDnnSettings, {"seq_len": True}, "seq_len"),
        (GraphSageSettings, {"dims": (20, 0)}, "dims[1]"),
        (GraphSageSettings, {"samples": (25,)}, "samples[1]"),  # the missing second hop
        (GraphSageSettings, {"walk_length": 1}, "walk_length"),
        (WalkSettings, {"q": 0.0}, "q"),
        (WalkSettings, {"window": 2, "epoch": 3}, "epoch"),
    ],
)
def test_baseline_settings_name_the_bad_field(settings: Any, changes: dict[str, Any], field: str) -> None:
    # Every baseline's settings are config models: the error is one line starting with the field's path.
    with pytest.raises(ConfigError) as info:
        settings(**changes)
    assert info.value.field == field and str(info.value).startswith(f"{field}: ")
    assert settings().replace(epochs=2).epochs == 2
