"""LINE with second-order proximity (Tang et al., WWW 2015), trained by the shared loop.

Every vertex ``i`` has a vertex vector ``u_i`` and a context vector ``u'_i``. An edge ``(i, j)`` drawn
with probability proportional to its weight is a positive; ``K`` vertices drawn from
``P_n(v) ~ d_v^0.75`` (``d_v`` = weighted degree) are its negatives (equation 7 of the LINE paper):

    -log sigma(u'_j . u_i) - sum_{n=1..K} log sigma(-u'_n . u_i)

The graph is the undirected version of the item graph, each edge used in both directions (LINE's
treatment of undirected graphs), weight = transitions in both directions (``learned.symmetric_edges``).
The item vectors are the vertex vectors ``u``.

Settings (``LineSettings``), A.3 and deviations:

- dim 64 and K = 10 negatives per edge, as A.3.
- Optimiser: the shared loop's Adam (lr 0.01, row-sparse) instead of LINE's SGD with a linearly
  decayed rate 0.025: the shared loop has one optimiser family, and Adam needs far fewer samples.
- Samples: LINE draws a fixed number of edges (default 10^10 for its million-node graphs). An "epoch"
  here is as many weighted edge draws as there are directed edges (~110k on MovieLens small), 1024
  per step. 5 epochs (~10 draws per undirected edge, ~5 s on one core), chosen on the MovieLens
  *valid* split: longer runs fit the rare edges and lose the popular structure (reports/tuning.md,
  section LINE).
- Served by inner product, not the cosine LINE uses for its classification tasks (far lower on the same
  valid split: reports/tuning.md, section LINE). The norm of ``u`` grows with the degree, so inner
  product keeps the popularity signal that this protocol rewards.
- Vertices without any edge get no signal: their vector is zero (as DeepWalk's unreached items).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from pydantic import Field
from torch import Tensor, nn

from core.config import FrozenConfig
from core.types import Float64Array, IntArray
from model.optim import SparseEmbedding
from model.pairs import UnigramSampler
from model.sgns import sgns_loss
from offline.baselines.base import ItemModel, TrainData
from offline.baselines.learned import (
    epoch_rng,
    fit_with_trainer,
    steps_for,
    symmetric_edges,
    table,
    to_numpy,
    word2vec_init,
)


class LineSettings(FrozenConfig):
    """LINE-2nd hyper-parameters (see the module docstring for the choices)."""

    dim: int = Field(64, ge=1, description="Vector dimension (A.3: 64).")
    negatives: int = Field(10, ge=1, description="K negatives per sampled edge (A.3: 10).")
    neg_power: float = Field(
        0.75, ge=0, allow_inf_nan=False, description="Exponent of the degree noise (LINE: 0.75)."
    )
    batch_size: int = Field(1024, ge=1, description="Edges per step.")
    epochs: int = Field(5, ge=1, description="Passes of n_directed_edges weighted edge draws each.")
    lr: float = Field(0.01, gt=0, allow_inf_nan=False, description="Adam learning rate of the shared loop.")


@dataclass
class EdgeBatch:
    """Sampled edges ``src -> dst`` (``[B]`` int64 vertex rows) and their negatives ``[B, K]``."""

    src: Tensor
    dst: Tensor
    negatives: Tensor

    def __len__(self) -> int:
        return int(self.src.shape[0])

    def to(self, device: torch.device) -> EdgeBatch:
        return EdgeBatch(self.src.to(device), self.dst.to(device), self.negatives.to(device))


def line_loss(vertex: Tensor, context: Tensor, negatives: Tensor) -> Tensor:
    """Equation 7 of LINE averaged over the edges of a batch.

    Args:
        vertex: ``[B, d]`` vertex vectors ``u_i`` of the edge sources.
        context: ``[B, d]`` context vectors ``u'_j`` of the edge targets.
        negatives: ``[B, K, d]`` context vectors of each edge's negatives.
    Returns:
        ``mean_b [-log sigma(u'_j . u_i) - sum_n log sigma(-u'_n . u_i)]`` (0-dim tensor).
    """
    if negatives.dim() != 3:
        raise ValueError(f"negatives must be [B, K, d], got {tuple(negatives.shape)}")
    return sgns_loss(vertex, context, negatives)


class Line(nn.Module):
    """Vertex table ``u`` (uniform ``+-0.5/dim``, as LINE) and context table ``u'`` (zeros, as LINE),
    both row-sparse."""

    def __init__(self, num_items: int, *, dim: int = 64, seed: int = 0) -> None:
        super().__init__()
        if num_items < 1:
            raise ValueError(f"num_items must be >= 1, got {num_items}")
        gen = torch.Generator().manual_seed(seed)
        self.vertex = SparseEmbedding(word2vec_init(num_items, dim, gen))
        self.context = SparseEmbedding(torch.zeros(num_items, dim))

    def loss(self, batch: EdgeBatch) -> Tensor:
        u, c = table(self.vertex), table(self.context)
        b, k = batch.negatives.shape
        neg = c.gather(batch.negatives.reshape(-1)).reshape(b, k, -1)
        return line_loss(u.gather(batch.src), c.gather(batch.dst), neg)

    @torch.no_grad()
    def vectors(self) -> np.ndarray:
        """Vertex vectors ``u`` as float32 ``[num_items, dim]``."""
        return to_numpy(table(self.vertex).weight)


def make_edge_batches(
    src: IntArray,
    dst: IntArray,
    weight: Float64Array,
    n_items: int,
    s: LineSettings,
    seed: int,
) -> tuple[int, Callable[[int], Iterator[EdgeBatch]]]:
    """Batch function: per epoch ``len(src)`` edges drawn with probability ~ weight (with replacement),
    each with ``s.negatives`` vertices from ``degree ** neg_power``; ``(steps_per_epoch, batches)``."""
    edge_sampler = UnigramSampler(weight, power=1.0)
    degree = np.bincount(src, weights=weight, minlength=n_items)
    noise = UnigramSampler(degree, power=s.neg_power)
    n_draws = len(src)
    steps = steps_for(n_draws, s.batch_size)

    def batches(epoch: int) -> Iterator[EdgeBatch]:
        rng = epoch_rng(seed, epoch)
        for step in range(steps):
            size = min(s.batch_size, n_draws - step * s.batch_size)
            edges = edge_sampler.sample(rng, size)
            yield EdgeBatch(
                torch.from_numpy(src[edges]),
                torch.from_numpy(dst[edges]),
                torch.from_numpy(noise.sample(rng, (size, s.negatives))),
            )

    return steps, batches


def fit_line(data: TrainData, *, seed: int = 0, settings: LineSettings | None = None) -> ItemModel:
    """LINE-2nd vertex vectors of the undirected item graph, served by inner product."""
    s = settings or LineSettings()
    src, dst, weight = symmetric_edges(data)
    if len(src) == 0:
        raise ValueError("the item graph has no edge between two different items: LINE has nothing to fit")
    model = Line(data.n_items, dim=s.dim, seed=seed)
    steps, batches = make_edge_batches(src, dst, weight, data.n_items, s, seed)
    fit_with_trainer(model, batches, epochs=s.epochs, lr=s.lr, seed=seed, steps_per_epoch=steps, name="line")
    vectors = model.vectors()
    vectors[np.bincount(src, minlength=data.n_items) == 0] = 0.0
    return ItemModel(vectors=vectors, metric="ip")
