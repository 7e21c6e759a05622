"""Unsupervised GraphSAGE (Hamilton et al., NeurIPS 2017) with the mean aggregator, two layers.

Node features are a free embedding per item (the paper used no attributes either, A.3). Layer ``k``
computes, for a node ``v`` and a uniform sample ``S_k(v)`` of its neighbours in the undirected item
graph (GraphSAGE's ``MeanAggregator`` with ``concat=True``):

    h^k_v = act([W^k_self h^{k-1}_v ; W^k_neigh mean_{u in S_k(v)} h^{k-1}_u])      (act: ReLU, then none)

and the output is ``z_v = h^2_v / ||h^2_v||``. The unsupervised loss (equation 1 of the paper) pulls
together nodes that co-occur on short random walks and pushes apart ``Q`` negatives drawn from
``degree^0.75`` (shared by the batch, as GraphSAGE's candidate sampler):

    -log sigma(z_u . z_v) - sum_{n=1..Q} log sigma(-z_u . z_n)

A batch carries its sampled computation graph: the distinct nodes of the batch, ``samples[0]`` sampled
neighbours of each (aggregated by layer 2) and ``samples[1]`` sampled neighbours of each of those
(aggregated by layer 1), remapped to local rows, so only the features of that 2-hop sample are gathered.

Settings (``GraphSageSettings``), A.3 and deviations:

- Layers of 64 and 32 units, not A.3's 20 and 10: with ``concat`` each layer outputs twice its units,
  so ``z`` has 64 dimensions (like the other baselines) instead of 20; 64/32 scored better than 20/10
  on both seeds of the MovieLens *valid* split at a similar cost (reports/tuning.md, section
  GraphSAGE). ``GraphSageSettings(dims=(20, 10))`` is A.3's model. Dropout 0 (A.3).
- Neighbour samples 25 (hop 1) and 10 (hop 2), walks of length 5 and 20 shared negatives, as the
  GraphSAGE reference code; it draws 50 walks per node once, here 2 per node are redrawn every epoch
  for 3 epochs (5 walks per node scored about the same on the valid split at 2.5x the cost:
  reports/tuning.md, section GraphSAGE; the Taobao sample has ~43k connected items, so the steps per
  epoch scale with it).
- Batch 512 positive pairs instead of A.3's 256 (half the steps; a step's cost is dominated by the
  2-hop sample; 1024 scored lower: reports/tuning.md, section GraphSAGE), the shared loop's Adam lr
  0.01, clipping 1.
- Feature dimension 64. Isolated items (no edge) are never in a walk nor drawn as negatives (zero
  degree); they get a zero vector.
- Output vectors use the *full* neighbourhood mean (the expectation of the sampled mean) instead of
  a sample, so they are deterministic given the weights. Served by cosine (``z`` is unit length).

The low scores match the paper (Table 2: GraphSAGE is by far the weakest baseline, 2.2% HitRate@50 on
MovieLens): unit-length outputs cannot carry the popularity that this protocol rewards, and the
aggregator smooths an item into its neighbourhood.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from core.config import FrozenConfig, PositiveInt
from core.types import IntArray
from model.optim import SparseEmbedding
from model.pairs import UnigramSampler
from model.sgns import sgns_loss
from offline.baselines.base import ItemModel, TrainData
from offline.baselines.learned import (
    batch_bounds,
    epoch_rng,
    fit_with_trainer,
    reset_dense_,
    steps_for,
    table,
    to_numpy,
    word2vec_init,
)
from offline.baselines.walks import random_walks, undirected_csr


class GraphSageSettings(FrozenConfig):
    """GraphSAGE hyper-parameters (see the module docstring)."""

    feature_dim: int = Field(64, ge=1, description="Size of the learned free feature of every item.")
    dims: tuple[PositiveInt, PositiveInt] = Field(
        (64, 32), strict=False, description="Units of layers 1 and 2 (A.3: 20, 10); outputs twice as wide."
    )
    samples: tuple[PositiveInt, PositiveInt] = Field(
        (25, 10),
        strict=False,
        description="Neighbours sampled per node at hop 1 (layer 2) and hop 2 (layer 1).",
    )
    negatives: int = Field(20, ge=1, description="Q negatives shared by a batch.")
    neg_power: float = Field(0.75, ge=0, allow_inf_nan=False, description="Exponent of the degree noise.")
    walks_per_node: int = Field(2, ge=1, description="Walks per node whose co-occurrences are the positives.")
    walk_length: int = Field(5, ge=2, description="Nodes per walk.")
    batch_size: int = Field(512, ge=1, description="Positive pairs per step.")
    epochs: int = Field(3, ge=1, description="Epochs of the shared loop.")
    lr: float = Field(0.01, gt=0, allow_inf_nan=False, description="Adam learning rate of the shared loop.")


def sample_neighbours(adj: sp.csr_matrix, nodes: IntArray, k: int, rng: np.random.Generator) -> IntArray:
    """``k`` neighbours of every node, uniform with replacement -> int64 ``[len(nodes), k]``; an isolated
    node is its own neighbour."""
    deg = (adj.indptr[nodes + 1] - adj.indptr[nodes])[:, None]
    off = np.floor(rng.random((len(nodes), k)) * deg).astype(np.int64)
    picked = adj.indices[np.minimum(adj.indptr[nodes][:, None] + off, max(adj.nnz - 1, 0))]
    return np.where(deg > 0, picked, nodes[:, None]).astype(np.int64)


def compact(ids: IntArray, n: int) -> tuple[IntArray, IntArray]:
    """``(unique ids ascending, position of every id in them)``, via a marker array of ``n`` (no sort)."""
    mark = np.zeros(n, dtype=bool)
    mark[ids] = True
    unique = np.flatnonzero(mark)
    pos = np.cumsum(mark) - 1
    return unique, pos[ids]


@dataclass
class SageBatch:
    """Positive pairs, shared negatives and their sampled 2-hop computation graph, in local rows.

    - ``feature_rows`` ``[R]``: item rows whose features are gathered.
    - ``l1_self`` ``[U]``, ``l1_neigh`` ``[U, samples[1]]``: rows of ``feature_rows`` for layer 1's nodes.
    - ``l2_self`` ``[T]``, ``l2_neigh`` ``[T, samples[0]]``: rows of layer 1's output for layer 2's nodes.
    - ``u``, ``v`` ``[B]``, ``negatives`` ``[Q]``: rows of layer 2's output.
    """

    feature_rows: Tensor
    l1_self: Tensor
    l1_neigh: Tensor
    l2_self: Tensor
    l2_neigh: Tensor
    u: Tensor
    v: Tensor
    negatives: Tensor

    def __len__(self) -> int:
        return int(self.u.shape[0])

    def to(self, device: torch.device) -> SageBatch:
        return SageBatch(*(getattr(self, f).to(device) for f in self.__dataclass_fields__))


def build_batch(
    adj: sp.csr_matrix,
    u: IntArray,
    v: IntArray,
    negatives: IntArray,
    samples: tuple[int, int],
    rng: np.random.Generator,
) -> SageBatch:
    """Sample the computation graph of pairs ``(u, v)`` and ``negatives`` (item rows) -> :class:`SageBatch`.

    Layer 2 runs on the batch's distinct nodes with ``samples[0]`` neighbours each; layer 1 on those
    nodes and their sampled neighbours, with ``samples[1]`` neighbours each.
    """
    n = adj.shape[0]
    top, top_pos = compact(np.concatenate([u, v, negatives]), n)
    hop1 = sample_neighbours(adj, top, samples[0], rng)
    mid, mid_pos = compact(np.concatenate([top, hop1.ravel()]), n)
    hop2 = sample_neighbours(adj, mid, samples[1], rng)
    rows, row_pos = compact(np.concatenate([mid, hop2.ravel()]), n)
    b, t, m = len(u), len(top), len(mid)
    return SageBatch(
        feature_rows=torch.from_numpy(rows.astype(np.int64)),
        l1_self=torch.from_numpy(row_pos[:m]),
        l1_neigh=torch.from_numpy(row_pos[m:].reshape(m, samples[1])),
        l2_self=torch.from_numpy(mid_pos[:t]),
        l2_neigh=torch.from_numpy(mid_pos[t:].reshape(t, samples[0])),
        u=torch.from_numpy(top_pos[:b]),
        v=torch.from_numpy(top_pos[b : 2 * b]),
        negatives=torch.from_numpy(top_pos[2 * b :]),
    )


def mean_aggregate(self_h: Tensor, neigh_mean: Tensor, w_self: nn.Linear, w_neigh: nn.Linear) -> Tensor:
    """GraphSAGE's mean aggregator with concat: ``[W_self h_v ; W_neigh mean_u h_u]`` (before ``act``).

    Args:
        self_h: ``[N, d_in]`` representations of the nodes; neigh_mean: ``[N, d_in]`` means over
            their (sampled) neighbours.
    Returns:
        ``[N, 2 * d_out]``.
    """
    return torch.cat([w_self(self_h), w_neigh(neigh_mean)], dim=1)


class GraphSage(nn.Module):
    """Free features (row-sparse, uniform ``+-0.5/dim``) and two mean-aggregator layers (dense,
    ``+-1/sqrt(fan_in)``, no bias, as GraphSAGE's default), seeded by ``seed``."""

    def __init__(
        self, num_items: int, *, feature_dim: int = 64, dims: tuple[int, int] = (20, 10), seed: int = 0
    ) -> None:
        super().__init__()
        if num_items < 1:
            raise ValueError(f"num_items must be >= 1, got {num_items}")
        gen = torch.Generator().manual_seed(seed)
        self.features = SparseEmbedding(word2vec_init(num_items, feature_dim, gen))
        self.self1 = nn.Linear(feature_dim, dims[0], bias=False)
        self.neigh1 = nn.Linear(feature_dim, dims[0], bias=False)
        self.self2 = nn.Linear(2 * dims[0], dims[1], bias=False)
        self.neigh2 = nn.Linear(2 * dims[0], dims[1], bias=False)
        reset_dense_([self.self1, self.neigh1, self.self2, self.neigh2], gen)

    def _layers(
        self,
        feats: Tensor,
        l1_self: Tensor,
        l1_neigh: Tensor,
        l1_offsets: Tensor | None,
        l2_self: Tensor,
        l2_neigh: Tensor,
        l2_offsets: Tensor | None,
    ) -> Tensor:
        # embedding_bag averages neighbour rows without materialising [N, samples, d].
        h1 = F.relu(
            mean_aggregate(
                feats[l1_self],
                F.embedding_bag(l1_neigh, feats, l1_offsets, mode="mean"),
                self.self1,
                self.neigh1,
            )
        )
        h2 = mean_aggregate(
            h1[l2_self], F.embedding_bag(l2_neigh, h1, l2_offsets, mode="mean"), self.self2, self.neigh2
        )
        return F.normalize(h2, dim=1)

    def embed(self, batch: SageBatch) -> Tensor:
        """``z`` of the batch's layer-2 nodes ``[T, 2 * dims[1]]`` (unit rows)."""
        feats = table(self.features).gather(batch.feature_rows)
        return self._layers(feats, batch.l1_self, batch.l1_neigh, None, batch.l2_self, batch.l2_neigh, None)

    def loss(self, batch: SageBatch) -> Tensor:
        z = self.embed(batch)
        return sgns_loss(z[batch.u], z[batch.v], z[batch.negatives])

    @torch.no_grad()
    def vectors(self, adj: sp.csr_matrix) -> np.ndarray:
        """``z`` of every node with full-neighbourhood means -> float32 ``[n, 2 * dims[1]]`` (an isolated
        node's neighbour mean is zero)."""
        device = table(self.features).weight.device
        nbr = torch.from_numpy(adj.indices.astype(np.int64)).to(device)
        off = torch.from_numpy(adj.indptr[:-1].astype(np.int64)).to(device)
        every = torch.arange(adj.shape[0], device=device)
        feats = table(self.features).weight
        return to_numpy(self._layers(feats, every, nbr, off, every, nbr, off))


def walk_pairs(
    adj: sp.csr_matrix, walks_per_node: int, walk_length: int, seed: int
) -> tuple[IntArray, IntArray]:
    """GraphSAGE's positives: ``(start, node)`` for every later node of every walk that is not the start."""
    walks = random_walks(adj, walks_per_node=walks_per_node, walk_length=walk_length, seed=seed)
    if not walks:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty
    paths = np.stack(walks)
    start = np.repeat(paths[:, :1], walk_length - 1, axis=1).ravel()
    other = paths[:, 1:].ravel()
    keep = start != other
    return start[keep], other[keep]


def make_sage_batches(
    adj: sp.csr_matrix, s: GraphSageSettings, seed: int
) -> tuple[int, Callable[[int], Iterator[SageBatch]]]:
    """Batch function: fresh walks every epoch, pairs shuffled, ``Q`` degree-sampled negatives per batch;
    returns ``(steps per epoch, batches)``."""
    deg = np.diff(adj.indptr).astype(np.float64)
    noise = UnigramSampler(deg, s.neg_power)
    expected = int((deg > 0).sum()) * s.walks_per_node * (s.walk_length - 1)

    def batches(epoch: int) -> Iterator[SageBatch]:
        rng = epoch_rng(seed, epoch)
        u, v = walk_pairs(adj, s.walks_per_node, s.walk_length, int(rng.integers(2**31)))
        perm = rng.permutation(len(u))
        u, v = u[perm], v[perm]
        for lo, hi in batch_bounds(len(u), s.batch_size):
            yield build_batch(adj, u[lo:hi], v[lo:hi], noise.sample(rng, s.negatives), s.samples, rng)

    return steps_for(expected, s.batch_size), batches


def fit_graphsage(data: TrainData, *, seed: int = 0, settings: GraphSageSettings | None = None) -> ItemModel:
    """Unsupervised GraphSAGE output vectors ``z`` (unit rows; zero for isolated items), served by cosine."""
    s = settings or GraphSageSettings()
    adj = undirected_csr(data.graph_indptr, data.graph_indices, data.n_items)
    if adj.nnz == 0:
        raise ValueError(
            "the item graph has no edge between two different items: GraphSAGE has nothing to fit"
        )
    model = GraphSage(data.n_items, feature_dim=s.feature_dim, dims=s.dims, seed=seed)
    steps, batches = make_sage_batches(adj, s, seed)
    fit_with_trainer(
        model, batches, epochs=s.epochs, lr=s.lr, seed=seed, steps_per_epoch=steps, name="graphsage"
    )
    vectors = model.vectors(adj)
    vectors[np.diff(adj.indptr) == 0] = 0.0
    return ItemModel(vectors=vectors, metric="cosine")
