"""Batched top-N neighbour search with the trigger removed: the precomputed item-to-item map of
section 4 of the paper ("I2I similarity maps"), and the vectorised search path of the serving index.

Scores are "higher is closer": the inner product for ``ip``, the negated squared L2 distance for ``l2``.
"""

from __future__ import annotations

from typing import Any, TypeVar

import faiss
import numpy as np
import numpy.typing as npt
from tqdm.auto import tqdm

from core.types import Float32Array, IntArray
from index.registry import Metric

_Int = TypeVar("_Int", bound=np.integer[Any])
_Float = TypeVar("_Float", bound=np.floating[Any])


def to_scores(distances: npt.NDArray[np.float32], metric: Metric) -> Float32Array:
    """FAISS distances -> scores, higher is closer (``l2``: ``-||a - b||^2``)."""
    d = np.asarray(distances, dtype=np.float32)
    return d if metric == "ip" else -d


def drop_self(
    ids: npt.NDArray[np.integer[Any]], scores: Float32Array, rows: IntArray, width: int
) -> tuple[IntArray, Float32Array]:
    """Remove each query's own row from its result list and keep ``width`` columns.

    ``ids`` / ``scores`` are ``[n, kk]`` search results (``-1`` padded) for query rows ``rows`` ``[n]``.
    When a row's own id is absent (ties, approximate search) its last column is dropped instead, so
    every row keeps ``kk - 1`` entries in rank order. Returns int64 ids ``[n, width]`` (``-1`` padded)
    and float32 scores (``-inf`` where padded).
    """
    n, kk = ids.shape
    out_ids = np.full((n, width), -1, dtype=np.int64)
    out_scores = np.full((n, width), -np.inf, dtype=np.float32)
    if n == 0 or kk == 0:
        return out_ids, out_scores
    is_self = ids == rows[:, None]
    drop = is_self.copy()
    drop[~is_self.any(axis=1), kk - 1] = True
    keep = ~drop
    kept_ids = ids[keep].reshape(n, kk - 1)
    kept_scores = scores[keep].reshape(n, kk - 1)
    w = min(width, kk - 1)
    out_ids[:, :w] = kept_ids[:, :w]
    out_scores[:, :w] = kept_scores[:, :w]
    out_scores[out_ids < 0] = -np.inf
    return out_ids, out_scores


def drop_own_group(
    ids: npt.NDArray[np.integer[Any]], scores: npt.NDArray[np.floating[Any]], rows: IntArray, groups: IntArray
) -> tuple[npt.NDArray[np.integer[Any]], npt.NDArray[np.floating[Any]]]:
    """Map rows ``ids`` / ``scores`` ``[n, w]`` of query rows ``rows`` without the neighbours whose
    ``groups`` value (e.g. category) is the query's own, the others moved up in rank order and the tail
    padded (``-1`` / ``-inf``). A query whose group is unknown (``-1``) keeps its row. Same dtypes."""
    own = groups[rows][:, None]
    drop = (ids >= 0) & (own >= 0) & (groups[np.maximum(ids, 0)] == own)
    return compact_rows(ids, scores, drop)


def compact_rows(
    ids: npt.NDArray[_Int], scores: npt.NDArray[_Float], drop: npt.NDArray[np.bool_]
) -> tuple[npt.NDArray[_Int], npt.NDArray[_Float]]:
    """Map rows ``ids`` / ``scores`` ``[n, w]`` without the entries where ``drop``: the others moved up in
    rank order, the tail padded (``-1`` / ``-inf``). Same dtypes."""
    order = np.argsort(drop, axis=1, kind="stable")  # kept entries first, each part in rank order
    out_ids = np.take_along_axis(ids, order, axis=1)
    out_scores = np.take_along_axis(scores, order, axis=1)
    tail = np.take_along_axis(drop, order, axis=1)
    out_ids[tail] = -1
    out_scores[tail] = -np.inf
    return out_ids, out_scores


def drop_own_group_in_place(
    ids: npt.NDArray[np.integer[Any]],
    scores: npt.NDArray[np.floating[Any]],
    groups: IntArray,
    block_rows: int = 1 << 16,
) -> None:
    """:func:`drop_own_group` over a whole map (row ``i`` is item ``i``'s; memory-mapped files too),
    block by block so the temporaries stay small."""
    for start in range(0, len(ids), block_rows):
        stop = min(len(ids), start + block_rows)
        rows = np.arange(start, stop, dtype=np.int64)
        ids[start:stop], scores[start:stop] = drop_own_group(
            np.asarray(ids[start:stop]), np.asarray(scores[start:stop]), rows, groups
        )


def search_rows(
    index: faiss.Index,
    queries: Float32Array,
    rows: IntArray,
    width: int,
    metric: Metric,
    params: Any = None,
) -> tuple[IntArray, Float32Array]:
    """Top-``width`` neighbours (self removed) of ``queries`` ``[n, d]``, which are the vectors of index
    rows ``rows``. Returns row ids int64 ``[n, width]`` (``-1`` padded) and float32 scores."""
    kk = min(width + 1, int(index.ntotal))
    q = np.ascontiguousarray(queries, dtype=np.float32)
    if params is None:
        distances, ids = index.search(q, kk)
    else:
        distances, ids = index.search(q, kk, params=params)
    return drop_self(ids, to_scores(distances, metric), np.asarray(rows, dtype=np.int64), width)


def build_topn_map(
    index: faiss.Index,
    vectors: Float32Array,
    topn: int,
    metric: Metric,
    *,
    params: Any = None,
    batch_size: int = 4096,
    out_ids: npt.NDArray[np.int32] | None = None,
    out_scores: npt.NDArray[np.floating[Any]] | None = None,
    progress: bool = True,
    desc: str = "top-N map",
) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.floating[Any]]]:
    """The precomputed map: for every row of ``vectors`` (the vectors ``index`` holds, in order), its
    ``topn`` nearest other rows and their scores, by batched (OpenMP multi-threaded) searches.

    Writes into ``out_ids`` (int32 ``[N, topn]``) / ``out_scores`` (e.g. a float16 memmap) when given,
    else allocates int32 / float32 arrays. Returns them.
    """
    n = int(vectors.shape[0])
    if out_ids is None:
        out_ids = np.empty((n, topn), dtype=np.int32)
    if out_scores is None:
        out_scores = np.empty((n, topn), dtype=np.float32)
    with tqdm(total=n, desc=desc, unit="item", disable=not progress, leave=False) as bar:
        for start in range(0, n, batch_size):
            stop = min(n, start + batch_size)
            rows = np.arange(start, stop, dtype=np.int64)
            ids, scores = search_rows(index, vectors[start:stop], rows, topn, metric, params)
            out_ids[start:stop] = ids.astype(np.int32)
            out_scores[start:stop] = scores.astype(out_scores.dtype)
            bar.update(stop - start)
    return out_ids, out_scores


def exact_topk(
    vectors: Float32Array, rows: IntArray, k: int, metric: Metric, batch_size: int = 1024
) -> tuple[IntArray, Float32Array]:
    """Brute-force top-``k`` (self removed) for ``rows`` over all ``vectors`` (the ground truth of the
    recall check). Returns row ids int64 ``[len(rows), k]`` and float32 scores."""
    index = faiss.IndexFlat(
        int(vectors.shape[1]), faiss.METRIC_INNER_PRODUCT if metric == "ip" else faiss.METRIC_L2
    )
    index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    ids = np.empty((len(rows), k), dtype=np.int64)
    scores = np.empty((len(rows), k), dtype=np.float32)
    for start in range(0, len(rows), batch_size):
        sel = rows[start : start + batch_size]
        ids[start : start + len(sel)], scores[start : start + len(sel)] = search_rows(
            index, vectors[sel], sel, k, metric
        )
    return ids, scores


def pair_scores(vectors: Float32Array, rows: IntArray, ids: IntArray, metric: Metric) -> Float32Array:
    """Exact scores of ``vectors[rows[i]]`` against ``vectors[ids[i, j]]`` (``-inf`` where ``ids < 0``)."""
    q = np.asarray(vectors[rows], dtype=np.float32)[:, None, :]
    c = np.asarray(vectors[np.maximum(ids, 0)], dtype=np.float32)
    if metric == "ip":
        s = np.einsum("nkd,nkd->nk", np.broadcast_to(q, c.shape), c)
    else:
        diff = c - q
        s = -np.einsum("nkd,nkd->nk", diff, diff)
    return np.where(ids >= 0, s, -np.inf).astype(np.float32)


def recall_at_k(
    vectors: Float32Array, rows: IntArray, found: IntArray, k: int, metric: Metric, *, rtol: float = 1e-4
) -> float:
    """Recall@k of ``found`` (``[n, >=k]`` row ids, self excluded) against exact search for ``rows``.

    Tie-tolerant: a found item counts when its exact score reaches the k-th exact score (within a
    relative ``rtol``), so duplicate vectors do not lower the figure. The denominator is
    ``min(k, N - 1)`` per query (fewer neighbours cannot exist).
    """
    n_items = int(vectors.shape[0])
    want = min(k, n_items - 1)
    if want <= 0 or len(rows) == 0:
        return 1.0
    _, truth_scores = exact_topk(vectors, rows, want, metric)
    kth = truth_scores[:, want - 1]
    got = np.asarray(found[:, :want], dtype=np.int64)
    got_scores = pair_scores(vectors, rows, got, metric)
    tol = rtol * np.maximum(np.abs(kth), 1.0)
    hits = (got >= 0) & (got != rows[:, None]) & (got_scores >= (kth - tol)[:, None])
    return float(hits.sum() / (want * len(rows)))
