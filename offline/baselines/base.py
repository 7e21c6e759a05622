"""What a baseline takes (:class:`TrainData`, read from a dataset folder) and returns (:class:`ItemModel`).

A baseline sees only the ``train`` split. It returns either item vectors (served by inner product or L2
through ``ServingIndex.from_vectors``) or a precomputed top-N map of vocabulary rows (served through
``ServingIndex.from_topn``), so every method is evaluated through the same service retrieval path.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
import pyarrow.parquet as pq

from core.layout import DatasetLayout
from core.manifests import DatasetManifest
from core.types import IntArray


@dataclass(frozen=True)
class TrainData:
    """Training-side inputs of a baseline, all indexed by item vocabulary row.

    - ``items``: int64 original ids ``[n_items]``; ``counts``: int64 train counts.
    - ``seq_indptr``/``seq_tokens``: ragged training sequences (sessions) of rows.
    - ``graph_indptr``/``graph_indices``/``graph_weights``: CSR item graph (src -> next).
    - ``user_rows``/``item_rows``: one entry per train event in the vocabulary (user index, item row).
    - ``side``: ``{view: int64 [n_items] row in that view's vocabulary, -1 unknown}`` (EGES side info).
    - ``attributes``: ``{view: int64 [n_items] original attribute id}`` (passed to the index).
    """

    items: IntArray
    counts: IntArray
    seq_indptr: IntArray
    seq_tokens: npt.NDArray[np.int32]
    graph_indptr: IntArray
    graph_indices: npt.NDArray[np.int32]
    graph_weights: npt.NDArray[np.float32]
    user_rows: IntArray
    item_rows: IntArray
    side: dict[str, IntArray]
    attributes: dict[str, IntArray]

    @property
    def n_items(self) -> int:
        return len(self.items)


@dataclass(frozen=True)
class ItemModel:
    """A fitted baseline: either ``vectors`` (float32 ``[n_items, dim]``, scored by ``metric``) or a
    top-N map ``topn_ids`` (int32 rows ``[n_items, N]``, ``-1`` padded) with ``topn_scores``."""

    vectors: npt.NDArray[np.float32] | None = None
    metric: Literal["ip", "l2", "cosine"] = "ip"
    topn_ids: npt.NDArray[np.int32] | None = None
    topn_scores: npt.NDArray[np.float32] | None = None

    def __post_init__(self) -> None:
        if (self.vectors is None) == (self.topn_ids is None):
            raise ValueError("an ItemModel holds exactly one of vectors or topn_ids")
        if self.topn_ids is not None and (
            self.topn_scores is None or self.topn_scores.shape != self.topn_ids.shape
        ):
            raise ValueError("topn_scores must be given with the same shape as topn_ids")


def load_train_data(dataset_dir: Path) -> TrainData:
    """Read the training side of a ``core.layout.DatasetLayout`` folder (the first view is the item view)."""
    layout = DatasetLayout(Path(dataset_dir))
    views = DatasetManifest.read(dataset_dir).views
    item_view, others = views[0], views[1:]
    items = np.load(layout.vocab(item_view)).astype(np.int64)
    counts = np.load(layout.vocab_counts(item_view)).astype(np.int64)
    seq = np.load(layout.sequences(item_view))
    graph = np.load(layout.graph(item_view))
    events = pq.read_table(layout.events, columns=["user_id", "item_id", "split"]).to_pandas()
    train = events[events["split"] == "train"]
    item_ids = train["item_id"].to_numpy(np.int64)
    pos = np.clip(np.searchsorted(items, item_ids, sorter=np.argsort(items)), 0, len(items) - 1)
    order = np.argsort(items)
    rows = order[pos]
    known = items[rows] == item_ids
    _, user_rows = np.unique(train["user_id"].to_numpy()[known], return_inverse=True)
    side = {
        v: np.load(layout.link(item_view, v)).astype(np.int64)
        for v in others
        if layout.link(item_view, v).exists()
    }
    attributes = {
        v: np.load(layout.attributes(v)).astype(np.int64) for v in others if layout.attributes(v).exists()
    }
    return TrainData(
        items=items,
        counts=counts,
        seq_indptr=seq["indptr"].astype(np.int64),
        seq_tokens=seq["tokens"].astype(np.int32),
        graph_indptr=graph["indptr"].astype(np.int64),
        graph_indices=graph["indices"].astype(np.int32),
        graph_weights=graph["weights"].astype(np.float32),
        user_rows=user_rows.astype(np.int64),
        item_rows=rows[known].astype(np.int64),
        side=side,
        attributes=attributes,
    )


def top_n_rows(
    indptr: IntArray, indices: npt.NDArray[np.integer], scores: npt.NDArray[np.floating], n_rows: int, n: int
) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.float32]]:
    """Top-``n`` columns of every row of a CSR score matrix (diagonal must already be removed).

    Returns int32 ``[n_rows, n]`` column ids (``-1`` padded) and float32 scores, best first, ties by
    column id. One lexsort over all entries: no loop over rows.
    """
    rows = np.repeat(np.arange(n_rows), np.diff(indptr))
    order = np.lexsort((indices, -np.asarray(scores, dtype=np.float64), rows))
    rows_s, cols_s, sc_s = rows[order], np.asarray(indices)[order], np.asarray(scores)[order]
    rank = np.arange(len(rows_s)) - np.asarray(indptr)[rows_s]
    keep = rank < n
    ids = np.full((n_rows, n), -1, dtype=np.int32)
    out = np.full((n_rows, n), -np.inf, dtype=np.float32)
    ids[rows_s[keep], rank[keep]] = cols_s[keep]
    out[rows_s[keep], rank[keep]] = sc_s[keep]
    return ids, out
