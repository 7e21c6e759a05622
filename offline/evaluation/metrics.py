"""Pure retrieval metrics: arrays in, numbers out (the faiss ``contrib/evaluation.py`` habit).

Conventions shared by every function:

- ``candidates``: int64 ``[n_users, K]`` ranked item ids, best first, ``-1`` padded when a retriever
  returned fewer than ``K`` items.
- Ragged per-user sets (ground truth, recent categories...) are CSR pairs ``(indptr, values)``:
  ``values[indptr[u]:indptr[u + 1]]`` is user ``u``'s set; ``indptr`` has ``n_users + 1`` entries.
- A ``hits`` matrix is boolean ``[n_users, K]``: ``hits[u, j]`` is True when the ``j``-th candidate
  of user ``u`` is in ``u``'s ground truth. Every metric at ``k`` reads its first ``k`` columns.

Definitions follow section 5.1.3 and appendix A.3 of the paper (``P_u`` the K recalled items,
``G_u`` the ground truth): Precision@K = |P_u ∩ G_u| / K, Recall@K = |P_u ∩ G_u| / |G_u|, both
averaged over users; HitRate@K = n_hit / N; F1@K = 2 P R / (P + R) from the *averaged* P and R
(the paper's table 2 figures satisfy this, e.g. Taobao 2 * 1.19 * 12.65 / 13.84 = 2.17).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from core.types import IntArray

BoolMatrix = npt.NDArray[np.bool_]

PAD = -1


def _check_k(hits: BoolMatrix, k: int) -> None:
    if hits.ndim != 2:
        raise ValueError(f"hits must be a 2-D [n_users, K] matrix, got shape {hits.shape}")
    if not 1 <= k <= hits.shape[1]:
        raise ValueError(f"k must be in [1, {hits.shape[1]}] (the candidate list length), got {k}")


def _check_csr(indptr: IntArray, values: np.ndarray, n_rows: int, name: str) -> None:
    if indptr.ndim != 1 or len(indptr) != n_rows + 1:
        raise ValueError(f"{name}_indptr must have n_users + 1 = {n_rows + 1} entries, got {indptr.shape}")
    if indptr[0] != 0 or indptr[-1] != len(values) or np.any(np.diff(indptr) < 0):
        raise ValueError(f"{name}_indptr must start at 0, be non-decreasing and end at len({name}_values)")


def row_isin(
    values: IntArray, set_indptr: IntArray, set_values: IntArray, *, name: str = "set"
) -> BoolMatrix:
    """Row-wise membership: ``out[u, j] = values[u, j] in set_u`` (``-1`` pads are never members).

    Args:
        values: int64 ``[n, m]``.
        set_indptr, set_values: CSR sets, one per row of ``values``.
    Returns:
        bool ``[n, m]``.

    Vectorised by encoding each (row, value) pair as one int64 key and calling ``np.isin`` once,
    instead of a Python loop over users.
    """
    values = np.asarray(values, dtype=np.int64)
    set_indptr = np.asarray(set_indptr, dtype=np.int64)
    set_values = np.asarray(set_values, dtype=np.int64)
    if values.ndim != 2:
        raise ValueError(f"values must be 2-D [n_users, m], got shape {values.shape}")
    n = values.shape[0]
    _check_csr(set_indptr, set_values, n, name)
    if values.size == 0:
        return np.zeros(values.shape, dtype=bool)
    lo = min(int(values.min()), int(set_values.min()) if len(set_values) else 0, PAD)
    hi = max(int(values.max()), int(set_values.max()) if len(set_values) else 0)
    span = hi - lo + 1
    if span > 0 and n > 0 and (n * span) >= np.iinfo(np.int64).max:
        raise ValueError("ids too large to pair with row numbers in int64; remap them to vocabulary indices")
    rows = np.arange(n, dtype=np.int64)
    query = rows[:, None] * span + (values - lo)
    set_rows = np.repeat(rows, np.diff(set_indptr))
    keys = set_rows * span + (set_values - lo)
    out = np.isin(query, keys)
    out &= values != PAD
    return out


def hit_matrix(candidates: IntArray, truth_indptr: IntArray, truth_items: IntArray) -> BoolMatrix:
    """``hits[u, j]``: is candidate ``j`` of user ``u`` in ``u``'s ground truth (pads never hit)."""
    return row_isin(candidates, truth_indptr, truth_items, name="truth")


def truth_sizes(truth_indptr: IntArray) -> IntArray:
    """``|G_u|`` per user from a CSR ground truth (duplicates must already be removed)."""
    return np.diff(np.asarray(truth_indptr, dtype=np.int64)).astype(np.int64)


def hit_rate_at_k(hits: BoolMatrix, k: int) -> float:
    """HitRate@K = n_hit / N: share of users with at least one ground-truth item in their top ``k``."""
    _check_k(hits, k)
    if hits.shape[0] == 0:
        return 0.0
    return float(hits[:, :k].any(axis=1).mean())


def precision_at_k(hits: BoolMatrix, k: int) -> float:
    """Mean over users of |P_u ∩ G_u| / K (K even when fewer than ``k`` candidates came back)."""
    _check_k(hits, k)
    if hits.shape[0] == 0:
        return 0.0
    return float((hits[:, :k].sum(axis=1) / k).mean())


def recall_at_k(hits: BoolMatrix, n_truth: IntArray, k: int) -> float:
    """Mean over users of |P_u ∩ G_u| / |G_u|; every user must have a non-empty ground truth."""
    _check_k(hits, k)
    n_truth = np.asarray(n_truth)
    if n_truth.shape != (hits.shape[0],):
        raise ValueError(f"n_truth must have one entry per user ({hits.shape[0]}), got {n_truth.shape}")
    if np.any(n_truth <= 0):
        raise ValueError("every user needs a non-empty ground truth (|G_u| > 0) for recall")
    if hits.shape[0] == 0:
        return 0.0
    return float((hits[:, :k].sum(axis=1) / n_truth).mean())


def f1_from(precision: float, recall: float) -> float:
    """F1@K = 2 P R / (P + R) (appendix A.3); 0 when both are 0."""
    total = precision + recall
    return 0.0 if total == 0 else 2.0 * precision * recall / total


def ndcg_at_k(hits: BoolMatrix, n_truth: IntArray, k: int) -> float:
    """Mean binary-relevance NDCG@K: DCG = sum_j hit_j / log2(j + 2); IDCG puts min(|G_u|, k) hits first."""
    _check_k(hits, k)
    n_truth = np.asarray(n_truth, dtype=np.int64)
    if n_truth.shape != (hits.shape[0],) or np.any(n_truth <= 0):
        raise ValueError("n_truth must hold one positive |G_u| per user")
    if hits.shape[0] == 0:
        return 0.0
    discounts = 1.0 / np.log2(np.arange(k) + 2.0)
    dcg = hits[:, :k].astype(np.float64) @ discounts
    ideal = np.concatenate([[0.0], np.cumsum(discounts)])[np.minimum(n_truth, k)]
    return float((dcg / ideal).mean())


def coverage_at_k(candidates: IntArray, k: int, catalogue_size: int) -> float:
    """Catalogue coverage: distinct (non-pad) items in all users' top ``k`` / catalogue size."""
    if catalogue_size <= 0:
        raise ValueError(f"catalogue_size must be positive, got {catalogue_size}")
    if candidates.ndim != 2 or not 1 <= k <= candidates.shape[1]:
        raise ValueError(f"candidates must be [n_users, K>= {k}], got shape {candidates.shape}")
    top = candidates[:, :k]
    return float(len(np.unique(top[top != PAD])) / catalogue_size)


def candidate_share_at_k(flags: BoolMatrix, candidates: IntArray, k: int) -> float:
    """Share of returned (non-pad) top-``k`` candidates that are flagged, pooled over all users.

    Args:
        flags: bool ``[n_users, K]``, e.g. True where the candidate's category is new to the user
            (``NewCategoryShare``) or equals the trigger's category (``TriggerCategoryShare``), as the
            protocol computes them.
        candidates: the matching ``[n_users, K]`` ids, used only to ignore ``-1`` pads.
    """
    _check_k(flags, k)
    real = candidates[:, :k] != PAD
    n_real = int(real.sum())
    return 0.0 if n_real == 0 else float((flags[:, :k] & real).sum() / n_real)


def accuracy_metrics(
    candidates: IntArray,
    truth_indptr: IntArray,
    truth_items: IntArray,
    ks: tuple[int, ...],
    *,
    catalogue_size: int,
    prefix: str = "",
) -> dict[str, float]:
    """Every accuracy metric at every ``k`` in ``ks`` as ``{"<prefix>HitRate@k": ..., ...}``.

    Users with an empty ground truth must be dropped before the call (they have no recall).
    """
    hits = hit_matrix(candidates, truth_indptr, truth_items)
    sizes = truth_sizes(truth_indptr)
    out: dict[str, float] = {}
    for k in ks:
        p = precision_at_k(hits, k)
        r = recall_at_k(hits, sizes, k)
        out[f"{prefix}HitRate@{k}"] = hit_rate_at_k(hits, k)
        out[f"{prefix}Recall@{k}"] = r
        out[f"{prefix}Precision@{k}"] = p
        out[f"{prefix}F1@{k}"] = f1_from(p, r)
        out[f"{prefix}NDCG@{k}"] = ndcg_at_k(hits, sizes, k)
        if not prefix:
            out[f"Coverage@{k}"] = coverage_at_k(candidates, k, catalogue_size)
    return out


def per_user_at_k(
    hits: BoolMatrix, n_truth: IntArray, k: int
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Per user, what HitRate@K and Recall@K average: hit (1.0 or 0.0) and |P_u ∩ G_u| / |G_u|."""
    _check_k(hits, k)
    n_truth = np.asarray(n_truth, dtype=np.int64)
    if n_truth.shape != (hits.shape[0],) or np.any(n_truth <= 0):
        raise ValueError("n_truth must hold one positive |G_u| per user")
    found = hits[:, :k].sum(axis=1)
    return (found > 0).astype(np.float64), found / n_truth


def paired_difference(a: npt.ArrayLike, b: npt.ArrayLike, z: float = 1.96) -> tuple[float, float]:
    """Mean of ``a - b`` over the same users and the half-width of its normal-approximation interval,
    ``z * sd(a - b) / sqrt(n)`` (z = 1.96: 95%). Pairing by user removes the difficulty both methods
    share, which two separate per-method intervals would count twice."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.ndim != 1 or a.shape != b.shape or len(a) < 2:
        raise ValueError(
            f"a and b must be 1-D, of one length >= 2 (one value per user), got {a.shape}, {b.shape}"
        )
    d = a - b
    return float(d.mean()), float(z * d.std(ddof=1) / np.sqrt(len(d)))
