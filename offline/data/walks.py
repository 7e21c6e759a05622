"""Weighted random walks over a CSR view graph: DeepWalk (``p = q = 1``) and node2vec (``p``, ``q``).

Used to augment the session sequences (section 3.1 mentions random walks as the common alternative).
All walkers advance together, one vectorised step at a time. node2vec's second-order bias is applied by
rejection sampling (as in KnightKing / PecanPy's sparse mode): propose ``x`` from the first-order
weights of the current node ``v``, accept with probability ``alpha(t, x) / max(alpha)``, where ``t`` is
the previous node and ``alpha = 1/p`` if ``x == t``, ``1`` if ``t -> x`` is an edge, else ``1/q``.
Walks are reproducible for a given seed. A walk stops early at a node with no out-edge.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

Int64Array = npt.NDArray[np.int64]
Int32Array = npt.NDArray[np.int32]


def _propose(
    current: Int64Array,
    indptr: Int64Array,
    indices: Int32Array,
    cumw: npt.NDArray[np.float64],
    rng: np.random.Generator,
) -> Int64Array:
    """One weighted neighbour of every ``current`` node (each must have out-degree > 0)."""
    lo, hi = indptr[current], indptr[current + 1]
    base = np.where(lo > 0, cumw[np.maximum(lo - 1, 0)], 0.0)
    total = cumw[hi - 1] - base
    target = base + rng.random(len(current)) * total
    pos = np.searchsorted(cumw, target, side="right")
    # Float rounding may land one past the row's end; clamp into the row.
    pos = np.clip(pos, lo, hi - 1)
    return indices[pos].astype(np.int64)


def random_walks(
    indptr: Int64Array,
    indices: Int32Array,
    weights: npt.NDArray[np.float32],
    *,
    walks_per_node: int,
    walk_length: int,
    p: float = 1.0,
    q: float = 1.0,
    seed: int = 0,
) -> tuple[Int64Array, Int32Array]:
    """Walks from every node with out-edges, ``walks_per_node`` rounds, as ragged arrays.

    Takes a CSR graph (destinations sorted within a row, positive weights). Returns ``(indptr int64,
    tokens int32)``: walk ``i`` is ``tokens[indptr[i]:indptr[i+1]]`` (start node first, at most
    ``walk_length`` nodes). Walk order: round by round, start nodes ascending.
    """
    if walk_length < 1 or walks_per_node < 0:
        raise ValueError("random_walks: walk_length must be >= 1 and walks_per_node >= 0")
    if p <= 0 or q <= 0:
        raise ValueError(f"random_walks: p and q must be > 0, got p={p}, q={q}")
    n = len(indptr) - 1
    degree = np.diff(indptr)
    starts = np.flatnonzero(degree > 0)
    if walks_per_node == 0 or len(starts) == 0:
        return np.zeros(1, dtype=np.int64), np.zeros(0, dtype=np.int32)
    rng = np.random.default_rng(seed)
    cumw = np.cumsum(weights, dtype=np.float64)
    walkers = np.tile(starts, walks_per_node).astype(np.int64)
    paths = np.full((len(walkers), walk_length), -1, dtype=np.int64)
    paths[:, 0] = walkers
    second_order = not (p == 1.0 and q == 1.0)
    alpha_max = max(1.0 / p, 1.0, 1.0 / q)
    edge_keys = np.repeat(np.arange(n, dtype=np.int64), degree) * n + indices.astype(np.int64)
    active = np.arange(len(walkers))
    for step in range(1, walk_length):
        cur = paths[active, step - 1]
        alive = degree[cur] > 0
        active, cur = active[alive], cur[alive]
        if len(active) == 0:
            break
        nxt = _propose(cur, indptr, indices, cumw, rng)
        if second_order and step >= 2:
            prev = paths[active, step - 2]
            pending = np.arange(len(active))
            while len(pending):
                x, t = nxt[pending], prev[pending]
                key = t * n + x
                pos = np.minimum(np.searchsorted(edge_keys, key), len(edge_keys) - 1)
                linked = edge_keys[pos] == key
                alpha = np.where(x == t, 1.0 / p, np.where(linked, 1.0, 1.0 / q))
                accept = rng.random(len(pending)) * alpha_max < alpha
                pending = pending[~accept]
                if len(pending):
                    nxt[pending] = _propose(cur[pending], indptr, indices, cumw, rng)
        paths[active, step] = nxt
    lengths = (paths >= 0).sum(axis=1)
    walk_indptr = np.zeros(len(paths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=walk_indptr[1:])
    return walk_indptr, paths[paths >= 0].astype(np.int32)
