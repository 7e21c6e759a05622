"""DeepWalk (Perozzi et al. 2014) and Node2Vec (Grover & Leskovec 2016): walks + gensim skip-gram.

Appendix A.3 settings: dimension 64, 7 negatives, walk length 5, 100 epochs; Node2Vec p = 1, q = 0.5.
Scaled to our small data and 2 CPU cores (see ``WalkSettings`` defaults): 5 walks per node of length 10,
window 5, 3 epochs (10 walks x 5 epochs took 200 s per seed on the Taobao sample). Items never reached by a walk (isolated in the item graph) get a zero vector.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from gensim.models import Word2Vec

from offline.baselines.base import ItemModel, TrainData
from offline.baselines.walks import random_walks, undirected_csr


@dataclass(frozen=True)
class WalkSettings:
    dim: int = 64
    negatives: int = 7
    walks_per_node: int = 5
    walk_length: int = 10
    window: int = 5
    epochs: int = 3
    p: float = 1.0
    q: float = 1.0
    workers: int = 2


def skipgram_vectors(walks: list[np.ndarray], n_items: int, s: WalkSettings, seed: int) -> np.ndarray:
    """gensim skip-gram (sg=1, negative sampling) over walks of item rows -> float32 ``[n_items, dim]``."""
    sentences = [[str(t) for t in w.tolist()] for w in walks]
    w2v = Word2Vec(
        sentences=sentences,
        vector_size=s.dim,
        window=s.window,
        negative=s.negatives,
        sg=1,
        min_count=1,
        workers=s.workers,
        epochs=s.epochs,
        seed=seed,
        # DeepWalk does not subsample frequent nodes; gensim's default (1e-3) drops most tokens of a
        # small catalogue, where every item is "frequent".
        sample=0,
    )
    out = np.zeros((n_items, s.dim), dtype=np.float32)
    keys = np.array([int(k) for k in w2v.wv.index_to_key], dtype=np.int64)
    out[keys] = w2v.wv.vectors
    return out


def fit_walk_embedding(data: TrainData, *, seed: int = 0, settings: WalkSettings | None = None) -> ItemModel:
    """Walk + skip-gram item vectors, served by cosine similarity."""
    s = settings or WalkSettings()
    adj = undirected_csr(data.graph_indptr, data.graph_indices, data.n_items)
    walks = random_walks(
        adj, walks_per_node=s.walks_per_node, walk_length=s.walk_length, p=s.p, q=s.q, seed=seed
    )
    return ItemModel(vectors=skipgram_vectors(walks, data.n_items, s, seed), metric="cosine")


def fit_deepwalk(data: TrainData, *, seed: int = 0) -> ItemModel:
    return fit_walk_embedding(data, seed=seed, settings=WalkSettings())


def fit_node2vec(data: TrainData, *, seed: int = 0) -> ItemModel:
    return fit_walk_embedding(data, seed=seed, settings=WalkSettings(p=1.0, q=0.5))
