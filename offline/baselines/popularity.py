"""Popularity: every trigger gets the items most users interacted with in training (a floor any method
must beat).

Items are ranked by *reach*, the number of distinct training users, not by events: repeated events of
one user (a shop's page views of the same product) say nothing about whether the next user will find the
item, and a list meant for every user should hold what most users reached.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from core.types import IntArray
from offline.baselines.base import ItemModel, TrainData


def most_frequent(counts: npt.NDArray[np.int64], n: int) -> npt.NDArray[np.int64]:
    """The rows of the ``n`` largest ``counts``, most frequent first; ties broken by row (the vocabulary is
    sorted by event frequency, so equal reach goes to the item with more events)."""
    return np.lexsort((np.arange(len(counts)), -counts))[:n]


def reach(data: TrainData) -> IntArray:
    """Distinct training users of each item row (int64 ``[n_items]``)."""
    pairs = np.unique(data.user_rows * data.n_items + data.item_rows)
    return np.bincount(pairs % data.n_items, minlength=data.n_items).astype(np.int64)


def fit_popularity(data: TrainData, *, seed: int = 0, topn: int = 200) -> ItemModel:
    """Same top-(``topn`` + 1) list for every item (one extra so that excluding the trigger leaves ``topn``).

    Scores are each item's :func:`reach` (order: :func:`most_frequent`). ``seed`` is unused: the method
    is deterministic.
    """
    n = min(topn + 1, data.n_items)
    users = reach(data)
    order = most_frequent(users, n)
    ids = np.broadcast_to(order.astype(np.int32), (data.n_items, n)).copy()
    scores = np.broadcast_to(users[order].astype(np.float32), (data.n_items, n)).copy()
    return ItemModel(topn_ids=ids, topn_scores=scores)
