"""Category baselines of the cold-item protocol: the trigger's category first, in a fixed order.

A new item has no behaviour, so the floor a cold rule must beat is what its category alone gives: every
item of the trigger's category (warm or cold), then the other items, both in one fixed order
(popularity or a seeded shuffle). They work on catalogue rows, not on ``TrainData`` (which holds warm
items only), and return top-N maps served through ``ServingIndex.from_topn`` like every baseline.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from core.types import IntArray
from offline.baselines.base import ItemModel


def in_category_map(categories: IntArray, order: IntArray, topn: int, *, block: int = 4096) -> ItemModel:
    """Top-``topn`` map of catalogue rows: the other rows of the trigger's category ranked by ``order``,
    then the rows of other categories by ``order`` (a row never lists itself: the service would drop it
    from the first ``k`` and answer ``k - 1``).

    Args:
        categories: int ``[n]`` category of each row, ``-1`` unknown (such a trigger gets the global list).
        order: int ``[n]`` rank key of each row, lower first (ties by row).
        topn: neighbours kept per row.
    Returns:
        An :class:`ItemModel` with int32 ``topn_ids`` (``min(topn, n - 1)`` wide, ``-1`` padded) and
        scores ``width - position``.
    """
    categories = np.asarray(categories, dtype=np.int64)
    order = np.asarray(order, dtype=np.int64)
    n = len(categories)
    if order.shape != (n,) or n == 0:
        raise ValueError(f"categories and order need one entry per row (n >= 1), got {n} and {order.shape}")
    if topn < 1:
        raise ValueError(f"topn must be >= 1, got {topn}")
    width = max(min(topn, n - 1), 1)
    depth = width + 1  # each list holds one row more: the trigger may be among them
    ranked = np.lexsort((np.arange(n), order))
    known = ranked[categories[ranked] >= 0]
    by_cat = known[np.argsort(categories[known], kind="stable")]
    cats, starts = np.unique(categories[by_cat], return_index=True)
    group = np.searchsorted(cats, categories[by_cat])
    pos = np.arange(len(by_cat)) - starts[group]
    lists = np.full((len(cats) + 1, depth), -1, dtype=np.int64)  # last row: no category
    inside = pos < depth
    lists[group[inside], pos[inside]] = by_cat[inside]
    head = ranked[:depth]
    ids = np.full((n, width), -1, dtype=np.int32)
    for lo in range(0, n, block):
        rows = np.arange(lo, min(lo + block, n))
        cat = categories[rows]
        at = np.minimum(np.searchsorted(cats, cat), max(len(cats) - 1, 0))
        has = (cat >= 0) & (cats[at] == cat) if len(cats) else np.zeros(len(rows), dtype=bool)
        own = lists[np.where(has, at, len(cats))]
        # the global list without the trigger's category (those rows are in ``own`` already, or past it)
        rest = np.where(categories[head][None, :] == np.where(has, cat, -2)[:, None], -1, head[None, :])
        candidates = np.concatenate([own, rest], axis=1)
        ids[rows] = _first_valid(np.where(candidates == rows[:, None], -1, candidates), width)
    scores = np.broadcast_to(np.arange(width, 0, -1, dtype=np.float32), ids.shape).copy()
    return ItemModel(topn_ids=ids, topn_scores=np.where(ids >= 0, scores, 0.0).astype(np.float32))


def _first_valid(candidates: npt.NDArray[np.int64], width: int) -> npt.NDArray[np.int32]:
    """The first ``width`` non-pad entries of each row, left-aligned, ``-1`` padded."""
    order = np.argsort(candidates < 0, axis=1, kind="stable")[:, :width]
    return np.take_along_axis(candidates, order, axis=1).astype(np.int32)


def popularity_in_category(counts: IntArray, categories: IntArray, topn: int) -> ItemModel:
    """The trigger's category by training count, then every other item by count; ties (every cold item
    has count 0) by catalogue row, so the catalogue's row order decides among cold items."""
    return in_category_map(categories, -np.asarray(counts, dtype=np.int64), topn)


def random_in_category(categories: IntArray, topn: int, *, seed: int) -> ItemModel:
    """The trigger's category in a seeded random order, then every other item in that order."""
    order = np.random.default_rng(seed).permutation(len(categories)).astype(np.int64)
    return in_category_map(categories, order, topn)
