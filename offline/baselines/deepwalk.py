"""DeepWalk (Perozzi et al. 2014) and Node2Vec (Grover & Leskovec 2016): walks + gensim skip-gram.

Appendix A.3 settings: dimension 64, 7 negatives, walk length 5, 100 epochs; Node2Vec p = 1, q = 0.5.
Scaled to our small data and 2 CPU cores (see ``WalkSettings`` defaults): 5 walks per node of length 10,
window 5, 3 epochs (10 walks x 5 epochs took 200 s per seed on the Taobao sample). Items never reached by a walk (isolated in the item graph) get a zero vector.
"""

from __future__ import annotations

import numpy as np
from gensim.models import Word2Vec
from pydantic import Field

from core.config import FrozenConfig
from offline.baselines.base import ItemModel, TrainData
from offline.baselines.walks import random_walks, undirected_csr


class WalkSettings(FrozenConfig):
    """DeepWalk / Node2Vec settings (appendix A.3 scaled to the bundled data)."""

    dim: int = Field(64, ge=1, description="Vector dimension.")
    negatives: int = Field(7, ge=1, description="Negatives per positive.")
    walks_per_node: int = Field(5, ge=1, description="Walks started from every node.")
    walk_length: int = Field(10, ge=2, description="Nodes per walk.")
    window: int = Field(5, ge=1, description="Skip-gram window over the walks.")
    epochs: int = Field(3, ge=1, description="gensim epochs.")
    p: float = Field(1.0, gt=0, allow_inf_nan=False, description="node2vec return parameter.")
    q: float = Field(1.0, gt=0, allow_inf_nan=False, description="node2vec in-out parameter.")
    workers: int = Field(2, ge=1, description="gensim worker threads.")


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
