"""Item-CF: the classical industrial baseline (section 5.2, "item co-occurrences and user voting weights").

    C = R^T W R,   W = diag(1 / log(1 + |u|)),   sim(i, j) = C_ij / sqrt(n_i n_j)   (i != j)

``R`` is the binary user x item (or session x item) matrix of the training split, ``|u|`` the number of
distinct items of the user (active users vote less), ``n_i`` the number of users with item ``i``.
Sparse matrix products (scipy.sparse): no Python loop over users.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import scipy.sparse as sp

from offline.baselines.base import ItemModel, TrainData, top_n_rows


def cooccurrence_similarity(unit_rows: np.ndarray, item_rows: np.ndarray, n_items: int) -> sp.csr_matrix:
    """Down-weighted, cosine-normalised co-occurrence ``sim`` as CSR ``[n_items, n_items]``, zero diagonal.

    Args:
        unit_rows: int ``[n_events]`` user (or session) index of each event.
        item_rows: int ``[n_events]`` item row of each event (duplicates are counted once per unit).
    """
    n_units = int(unit_rows.max()) + 1 if len(unit_rows) else 0
    r = sp.csr_matrix(
        (np.ones(len(item_rows), dtype=np.float64), (unit_rows, item_rows)), shape=(n_units, n_items)
    )
    r.data[:] = 1.0  # duplicates were summed by the constructor: back to binary
    activity = np.asarray(r.sum(axis=1)).ravel()
    weights = 1.0 / np.log1p(np.maximum(activity, 1.0))
    co = (r.T @ sp.diags(weights) @ r).tocsr()
    co.setdiag(0.0)
    co.eliminate_zeros()
    n_i = np.asarray(r.sum(axis=0)).ravel()
    norm = 1.0 / np.sqrt(np.maximum(n_i, 1.0))
    sim = sp.diags(norm) @ co @ sp.diags(norm)
    sim = sp.csr_matrix(sim)
    sim.sort_indices()
    return sim


def fit_itemcf(
    data: TrainData, *, seed: int = 0, topn: int = 200, unit: Literal["user", "session"] = "user"
) -> ItemModel:
    """Item-CF top-``topn`` map over item rows (deterministic; ``seed`` unused).

    ``unit="session"`` counts co-occurrence within training sequences instead of whole user histories.
    """
    if unit == "user":
        units, items = data.user_rows, data.item_rows
    elif unit == "session":
        units = np.repeat(np.arange(len(data.seq_indptr) - 1), np.diff(data.seq_indptr))
        items = data.seq_tokens.astype(np.int64)
    else:
        raise ValueError(f"unit must be 'user' or 'session', got {unit!r}")
    sim = cooccurrence_similarity(units, items, data.n_items)
    ids, scores = top_n_rows(sim.indptr, sim.indices, sim.data, data.n_items, topn)
    return ItemModel(topn_ids=ids, topn_scores=scores)
