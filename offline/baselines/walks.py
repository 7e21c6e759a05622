"""Random walks for the DeepWalk / Node2Vec / GraphSAGE baselines.

Walks run on the *undirected*, unweighted version of the item graph (the paper's graphs join consecutive
items; direction only matters for M2GRL's sessions), sampled by the one walk sampler of the project
(``offline.data.walks``: vectorised, node2vec's bias by rejection sampling).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from core.types import IntArray
from offline.data.walks import random_walks as sampled_walks


def undirected_csr(indptr: IntArray, indices: npt.NDArray[np.integer], n: int) -> sp.csr_matrix:
    """Binary symmetric CSR adjacency without self loops, indices sorted per row."""
    rows = np.repeat(np.arange(n), np.diff(indptr))
    a = sp.csr_matrix((np.ones(len(rows)), (rows, np.asarray(indices))), shape=(n, n))
    a = ((a + a.T) > 0).astype(np.float32).tocsr()
    a.setdiag(0)
    a.eliminate_zeros()
    a.sort_indices()
    return a


def random_walks(
    adj: sp.csr_matrix,
    *,
    walks_per_node: int,
    walk_length: int,
    p: float = 1.0,
    q: float = 1.0,
    seed: int = 0,
) -> list[npt.NDArray[np.int64]]:
    """Walks from every non-isolated node, ``walks_per_node`` times, in a shuffled order, as arrays of
    node ids: the prepare stage's sampler (``offline.data.walks``) on the unweighted graph ``adj``.

    ``p = q = 1`` is DeepWalk's uniform walk. Every node of an undirected graph has a neighbour, so
    every walk has ``walk_length`` nodes.
    """
    if walks_per_node < 1 or walk_length < 2:
        raise ValueError(
            f"walks_per_node must be >= 1 and walk_length >= 2, got {walks_per_node}, {walk_length}"
        )
    if p <= 0 or q <= 0:
        raise ValueError(f"p and q must be positive, got p={p}, q={q}")
    indptr = np.asarray(adj.indptr, dtype=np.int64)
    weights = np.ones(len(adj.indices), dtype=np.float32)
    walk_indptr, tokens = sampled_walks(
        indptr, np.asarray(adj.indices, dtype=np.int32), weights,
        walks_per_node=walks_per_node, walk_length=walk_length, p=p, q=q, seed=seed,
    )  # fmt: skip
    walks = np.split(tokens.astype(np.int64), walk_indptr[1:-1])
    order = np.random.default_rng(seed).permutation(len(walks))
    return [walks[i] for i in order]
