"""Random walks for the DeepWalk / Node2Vec baselines, vectorised over all walkers at once.

Walks run on the *undirected* version of the item graph (the paper's graphs join consecutive items;
direction only matters for M2GRL's sessions). Each step moves every live walker at once with numpy;
Node2Vec's second-order bias (Grover & Leskovec 2016) uses rejection sampling: propose a uniform
neighbour ``x`` of ``cur`` and accept it with probability ``w(x) / max w`` where ``w = 1/p`` if ``x`` is
the previous node, ``1`` if ``x`` is a neighbour of the previous node, ``1/q`` otherwise.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

IntArray = npt.NDArray[np.int64]


def undirected_csr(indptr: IntArray, indices: npt.NDArray[np.integer], n: int) -> sp.csr_matrix:
    """Binary symmetric CSR adjacency without self loops, indices sorted per row."""
    rows = np.repeat(np.arange(n), np.diff(indptr))
    a = sp.csr_matrix((np.ones(len(rows)), (rows, np.asarray(indices))), shape=(n, n))
    a = ((a + a.T) > 0).astype(np.float32).tocsr()
    a.setdiag(0)
    a.eliminate_zeros()
    a.sort_indices()
    return a


def _uniform_neighbour(adj: sp.csr_matrix, cur: IntArray, rng: np.random.Generator) -> IntArray:
    deg = adj.indptr[cur + 1] - adj.indptr[cur]
    off = np.floor(rng.random(len(cur)) * deg).astype(np.int64)
    return adj.indices[adj.indptr[cur] + off].astype(np.int64)


def _is_edge(adj: sp.csr_matrix, src: IntArray, dst: IntArray) -> npt.NDArray[np.bool_]:
    """Vectorised ``dst in neighbours(src)`` via one int64 key per edge and a binary search."""
    n = adj.shape[0]
    keys = np.repeat(np.arange(n, dtype=np.int64), np.diff(adj.indptr)) * n + adj.indices
    query = src * n + dst
    pos = np.clip(np.searchsorted(keys, query), 0, max(len(keys) - 1, 0))
    return keys[pos] == query if len(keys) else np.zeros(len(src), dtype=bool)


def random_walks(
    adj: sp.csr_matrix,
    *,
    walks_per_node: int,
    walk_length: int,
    p: float = 1.0,
    q: float = 1.0,
    seed: int = 0,
) -> list[npt.NDArray[np.int64]]:
    """Walks from every non-isolated node, ``walks_per_node`` times, as arrays of node ids.

    ``p = q = 1`` is DeepWalk's uniform walk. Returns walks of length ``walk_length`` (all nodes have a
    neighbour in an undirected graph, so no walk stops early).
    """
    if walks_per_node < 1 or walk_length < 2:
        raise ValueError(
            f"walks_per_node must be >= 1 and walk_length >= 2, got {walks_per_node}, {walk_length}"
        )
    if p <= 0 or q <= 0:
        raise ValueError(f"p and q must be positive, got p={p}, q={q}")
    rng = np.random.default_rng(seed)
    deg = np.diff(adj.indptr)
    starts = np.tile(np.flatnonzero(deg > 0), walks_per_node)
    rng.shuffle(starts)
    paths = np.empty((len(starts), walk_length), dtype=np.int64)
    paths[:, 0] = starts
    if len(starts) == 0:
        return []
    paths[:, 1] = _uniform_neighbour(adj, starts, rng)
    biased = not (p == 1.0 and q == 1.0)
    w_max = max(1.0 / p, 1.0, 1.0 / q)
    for step in range(2, walk_length):
        prev, cur = paths[:, step - 2], paths[:, step - 1]
        if not biased:
            paths[:, step] = _uniform_neighbour(adj, cur, rng)
            continue
        nxt = np.empty(len(cur), dtype=np.int64)
        todo = np.arange(len(cur))
        while len(todo):
            x = _uniform_neighbour(adj, cur[todo], rng)
            w = np.where(x == prev[todo], 1.0 / p, np.where(_is_edge(adj, prev[todo], x), 1.0, 1.0 / q))
            ok = rng.random(len(todo)) * w_max < w
            nxt[todo[ok]] = x[ok]
            todo = todo[~ok]
        paths[:, step] = nxt
    return list(paths)
