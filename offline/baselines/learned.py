"""Plumbing shared by the learned baselines (LINE, EGES, GRU4Rec, YouTube-DNN, GraphSAGE).

Every learned baseline is a model with ``loss(batch)`` plus a batch function ``epoch -> batches``,
trained by the one shared loop :func:`model.trainer.train` (dense Adam for ``parameters()``, row-sparse
lazy Adam for :class:`~model.optim.SparseEmbedding` tables, global gradient clipping at 1). This module
holds what they have in common: the trainer call, seeded per-epoch random sources, initialisers,
the undirected weighted item graph and the sampled-softmax loss of the two sequence models.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import numpy.typing as npt
import torch
from pydantic import Field
from torch import Tensor, nn

from core.config import FrozenConfig
from core.types import Float64Array, IntArray
from model.config import TrainerConfig
from model.optim import SparseEmbedding
from model.trainer import BatchFn, Trainable, TrainResult, train
from offline.baselines.base import TrainData


def fit_with_trainer(
    model: Trainable,
    batches: BatchFn,
    *,
    epochs: int,
    lr: float,
    seed: int,
    steps_per_epoch: int | None = None,
    name: str = "baseline",
    threads: int | None = 1,
    progress: bool = False,
) -> TrainResult:
    """Train ``model`` in place with the shared loop, ``TrainerConfig(epochs, lr, seed, device="auto")``.

    ``threads`` defaults to 1: the baselines' steps are many small ops (gathers of a few thousand rows),
    where a second intra-op thread gains little, and on a shared 2-core machine OpenMP's spin-waiting
    made a step several times slower (reports/tuning.md, section "baseline threads"). ``None`` lets the
    loop use every core.
    ``progress`` is off by default: the evaluation harness draws its own bar over methods and seeds.
    """
    config = TrainerConfig(epochs=epochs, lr=lr, seed=seed, device="auto", threads=threads)
    return train(model, batches, config, progress=progress, steps_per_epoch=steps_per_epoch, description=name)


def epoch_rng(seed: int, epoch: int) -> np.random.Generator:
    """The random source of one epoch: depends only on ``(seed, epoch)``, so resumed runs replay it."""
    return np.random.default_rng([seed, epoch])


def batch_bounds(n: int, batch_size: int) -> list[tuple[int, int]]:
    """``[(lo, hi), ...]`` cutting ``n`` examples into consecutive runs of at most ``batch_size``."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    return [(lo, min(lo + batch_size, n)) for lo in range(0, n, batch_size)]


def steps_for(n: int, batch_size: int) -> int:
    """Number of batches :func:`batch_bounds` yields for ``n`` examples."""
    return -(-n // batch_size)


def word2vec_init(rows: int, dim: int, gen: torch.Generator) -> Tensor:
    """``[rows, dim]`` uniform in ``+-0.5 / dim`` (word2vec's and LINE's input-vector initialisation)."""
    return (torch.rand(rows, dim, generator=gen) - 0.5) / dim


def reset_dense_(modules: Iterable[nn.Module], gen: torch.Generator) -> None:
    """Re-initialise every parameter of ``modules`` from ``gen`` (torch's default inits use the global
    generator, so a model built twice would otherwise differ): matrices uniform in ``+-1/sqrt(fan_in)``
    (torch's default for ``Linear`` and ``GRU``), vectors zero."""
    with torch.no_grad():
        for module in modules:
            for p in module.parameters():
                if p.dim() >= 2:
                    bound = 1.0 / float(p.shape[1]) ** 0.5
                    p.copy_((torch.rand(p.shape, generator=gen) * 2 - 1) * bound)
                else:
                    p.zero_()


def table(module: nn.Module) -> SparseEmbedding:
    """``module`` as a :class:`SparseEmbedding` (construction invariant of the models, not an input check)."""
    if not isinstance(module, SparseEmbedding):
        raise TypeError(f"expected a SparseEmbedding, got {type(module).__name__}")
    return module


def to_numpy(t: Tensor) -> npt.NDArray[np.float32]:
    """A (possibly CUDA) tensor as a contiguous float32 array."""
    return np.ascontiguousarray(t.detach().cpu().numpy(), dtype=np.float32)


def symmetric_edges(data: TrainData) -> tuple[IntArray, IntArray, Float64Array]:
    """The undirected weighted item graph as both directed copies of every edge, self loops dropped.

    The weight of ``{i, j}`` is ``w(i -> j) + w(j -> i)`` of the CSR graph (the prepared graph counts
    transitions, so the undirected weight counts them in both directions). Returns ``(src, dst, weight)``
    sorted by ``(src, dst)``; int64, int64, float64.
    """
    n = data.n_items
    src = np.repeat(np.arange(n, dtype=np.int64), np.diff(data.graph_indptr))
    dst = data.graph_indices.astype(np.int64)
    w = data.graph_weights.astype(np.float64)
    keep = src != dst
    src, dst, w = src[keep], dst[keep], w[keep]
    keys = np.concatenate([src * n + dst, dst * n + src])
    uniq, inverse = np.unique(keys, return_inverse=True)
    weight = np.bincount(inverse, weights=np.concatenate([w, w]), minlength=len(uniq))
    return (uniq // n).astype(np.int64), (uniq % n).astype(np.int64), weight.astype(np.float64)


def pool_size(requested: int, n_items: int) -> int:
    """Size of a shared negative pool: ``requested``, but never more than the catalogue."""
    return max(1, min(requested, n_items))


class SampledSoftmaxSettings(FrozenConfig):
    """Settings shared by the baselines trained with :func:`sampled_softmax_loss` (GRU4Rec, YouTube-DNN)."""

    samples: int = Field(1000, ge=1, description="Size of the shared pool of sampled items (A.3: 1000).")
    sample_power: float = Field(
        0.75, ge=0, allow_inf_nan=False, description="Exponent of the sampling distribution count ** power."
    )
    lr: float = Field(0.01, gt=0, allow_inf_nan=False, description="Adam learning rate of the shared loop.")


def sampled_softmax_loss(
    query: Tensor,
    positive: Tensor,
    negatives: Tensor,
    positive_bias: Tensor,
    negative_bias: Tensor,
    hits: Tensor,
) -> Tensor:
    """Softmax cross-entropy of the true item against a pool of sampled items shared by the batch.

    ``logit(j) = q . e_j + b_j``; the loss of one example is
    ``-logit(pos) + log(exp logit(pos) + sum_{n not a hit} exp logit(n))``, averaged over the batch.

    Args:
        query: ``[N, d]`` session / user vectors.
        positive: ``[N, d]`` output embeddings of the true next items; ``positive_bias`` ``[N]``.
        negatives: ``[S, d]`` output embeddings of the shared pool; ``negative_bias`` ``[S]``.
        hits: ``[N, S]`` bool, ``True`` where a pool item *is* the example's true item ("accidental
            hit"); it is dropped from that example's softmax, as TensorFlow's ``remove_accidental_hits``.
    Returns:
        Scalar mean loss; ``0`` for an empty batch.
    """
    if query.shape != positive.shape or query.dim() != 2:
        raise ValueError(
            f"query and positive must both be [N, d]; got {tuple(query.shape)}, {tuple(positive.shape)}"
        )
    if negatives.dim() != 2 or negatives.shape[1] != query.shape[1]:
        raise ValueError(f"negatives must be [S, {query.shape[1]}], got {tuple(negatives.shape)}")
    if hits.shape != (query.shape[0], negatives.shape[0]):
        raise ValueError(
            f"hits must be [N, S] = {(query.shape[0], negatives.shape[0])}, got {tuple(hits.shape)}"
        )
    if query.shape[0] == 0:
        return query.sum() * 0.0
    pos_logit = (query * positive).sum(dim=1) + positive_bias
    neg_logit = (query @ negatives.T + negative_bias).masked_fill(hits, float("-inf"))
    logits = torch.cat([pos_logit.unsqueeze(1), neg_logit], dim=1)
    return (torch.logsumexp(logits, dim=1) - pos_logit).mean()


def masked_mean(vectors: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``vectors`` ``[N, L, d]`` over the positions where ``mask`` ``[N, L]`` is true -> ``[N, d]``
    (zeros for a row without any position)."""
    m = mask.to(vectors.dtype).unsqueeze(2)
    return (vectors * m).sum(dim=1) / m.sum(dim=1).clamp(min=1.0)
