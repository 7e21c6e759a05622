"""Popularity: every trigger gets the most frequent training items (a floor any method must beat)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from offline.baselines.base import ItemModel, TrainData


def most_frequent(counts: npt.NDArray[np.int64], n: int) -> npt.NDArray[np.int64]:
    """The rows of the ``n`` largest ``counts``, most frequent first; ties broken by row (the vocabulary is
    sorted by frequency)."""
    return np.lexsort((np.arange(len(counts)), -counts))[:n]


def fit_popularity(data: TrainData, *, seed: int = 0, topn: int = 200) -> ItemModel:
    """Same top-(``topn`` + 1) list for every item (one extra so that excluding the trigger leaves ``topn``).

    Scores are training counts (order: :func:`most_frequent`). ``seed`` is unused: the method is
    deterministic.
    """
    n = min(topn + 1, data.n_items)
    order = most_frequent(data.counts, n)
    ids = np.broadcast_to(order.astype(np.int32), (data.n_items, n)).copy()
    scores = np.broadcast_to(data.counts[order].astype(np.float32), (data.n_items, n)).copy()
    return ItemModel(topn_ids=ids, topn_scores=scores)
