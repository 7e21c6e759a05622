"""EGES (Wang et al., KDD 2018): item embedding + side-information embeddings fused by learned attention.

Item ``i`` has its own vector ``W_0[i]`` and, for every side-information view ``s`` of
``TrainData.side`` (e.g. category), the vector ``W_s[side_s(i)]`` of its value in that view. They are
combined with a per-item softmax attention over the views (equation 6 of the EGES paper):

    H_i = sum_v exp(a_iv) W_v[i] / sum_v exp(a_iv)

where ``A = (a_iv)`` is a learned ``[n_items, 1 + n_views]`` matrix (a view whose value is unknown for
the item, ``side = -1``, is left out of the sum). ``H`` is trained with skip-gram and negative sampling
on the session sequences: ``-log sigma(H_i . c_j) - sum_n log sigma(-H_i . c_n)`` for a centre ``i``, a
context ``j`` and negatives ``n`` (``c`` = output vectors of items). The item vectors are ``H``.

Settings (``EgesSettings``): A.3 says EGES_asy uses M2GRL's settings, so this is M2GRL's skip-gram
task: dim 64, window 9 with word2vec's dynamic window, 10 negatives from ``count^0.75`` as a pool of
64 shared by the batch (each positive scored against all 64, negative term scaled by 10/64, as in
``model.sgns``), batch 2048, Adam lr 0.01, gradient clipping 1, 10 epochs. Deviations:

- The original EGES trains on random walks over the item graph; here (and in M2GRL's item view) the
  pairs come from the session sequences ``TrainData.seq_*``, as the brief asks.
- Served by inner product, as M2GRL (the EGES paper does not say).
- All tables are row-sparse; the attention matrix starts at zero (uniform weights over the views).

Cost: ~330 steps per epoch on MovieLens small (~670k pairs).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import numpy as np
import torch
from pydantic import Field
from torch import Tensor, nn

from core.config import FrozenConfig
from core.types import IntArray
from model.optim import SparseEmbedding
from model.pairs import UnigramSampler, count_pairs, skipgram_pairs
from model.sgns import sgns_loss
from offline.baselines.base import ItemModel, TrainData
from offline.baselines.learned import (
    batch_bounds,
    epoch_rng,
    fit_with_trainer,
    pool_size,
    steps_for,
    table,
    to_numpy,
    word2vec_init,
)


class EgesSettings(FrozenConfig):
    """EGES hyper-parameters (M2GRL's skip-gram settings, see the module docstring)."""

    dim: int = Field(64, ge=1, description="Dimension of the item, side-information and context vectors.")
    window: int = Field(9, ge=1, description="Skip-gram window over the session sequences.")
    dynamic_window: bool = Field(True, description="word2vec's reduced window (each centre draws 1..window).")
    negatives: int = Field(10, ge=1, description="k negatives per positive (the pool's term is scaled to k).")
    shared_negatives: int = Field(64, ge=1, description="Size of the negative pool drawn once per batch.")
    neg_power: float = Field(0.75, ge=0, allow_inf_nan=False, description="Exponent of the unigram noise.")
    batch_size: int = Field(2048, ge=1, description="Positive pairs per step.")
    epochs: int = Field(10, ge=1, description="Passes over the pairs of every sequence.")
    lr: float = Field(0.01, gt=0, allow_inf_nan=False, description="Adam learning rate of the shared loop.")


@dataclass
class EgesBatch:
    """Skip-gram positives ``centres``/``contexts`` ``[B]`` and a shared negative pool ``[S]`` (int64 rows)."""

    centres: Tensor
    contexts: Tensor
    negatives: Tensor

    def __len__(self) -> int:
        return int(self.centres.shape[0])

    def to(self, device: torch.device) -> EgesBatch:
        return EgesBatch(self.centres.to(device), self.contexts.to(device), self.negatives.to(device))


def attention_combine(views: Tensor, logits: Tensor, known: Tensor) -> Tensor:
    """Equation 6 of EGES: ``sum_v exp(a_v) e_v / sum_v exp(a_v)`` over the known views of each row.

    Args:
        views: ``[B, V, d]`` embeddings of each row in every view (the item view first).
        logits: ``[B, V]`` attention parameters ``a``.
        known: ``[B, V]`` bool, ``False`` where the row has no value in that view; at least the item
            view must be known.
    Returns:
        ``[B, d]`` combined embeddings.
    """
    if views.dim() != 3 or logits.shape != views.shape[:2] or known.shape != logits.shape:
        raise ValueError(
            f"views must be [B, V, d] and logits, known [B, V]; got {tuple(views.shape)}, "
            f"{tuple(logits.shape)}, {tuple(known.shape)}"
        )
    weights = torch.softmax(logits.masked_fill(~known, float("-inf")), dim=1)
    return (weights.unsqueeze(2) * views).sum(dim=1)


class Eges(nn.Module):
    """EGES tables: item ``W_0``, one ``W_s`` per side view (plus an unused "unknown" row), the attention
    matrix ``A`` and the output (context) table, all row-sparse.

    Args:
        side: view -> int ``[num_items]`` row of each item in that view, ``-1`` unknown.
        side_sizes: view -> vocabulary size of the view.
        dim: vector dimension.
        negatives: k of the negative term (scales a shared pool, see ``model.sgns.sgns_loss``).
        seed: seeds the initialisation (``W`` uniform ``+-0.5/dim``, context zeros, ``A`` zeros).
    """

    side_rows: Tensor
    side_known: Tensor

    def __init__(
        self,
        num_items: int,
        side: Mapping[str, IntArray],
        side_sizes: Mapping[str, int],
        *,
        dim: int = 64,
        negatives: int = 10,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if num_items < 1:
            raise ValueError(f"num_items must be >= 1, got {num_items}")
        for view, rows in side.items():
            if rows.shape != (num_items,):
                raise ValueError(f"side[{view!r}] must have one row per item ({num_items}), got {rows.shape}")
            if len(rows) and rows.max() >= side_sizes[view]:
                raise ValueError(f"side[{view!r}] points past its vocabulary of {side_sizes[view]} rows")
        self.views = list(side)
        self.negatives = negatives
        gen = torch.Generator().manual_seed(seed)
        self.item = SparseEmbedding(word2vec_init(num_items, dim, gen))
        # Row ``size`` of each side table stands for "unknown"; its attention weight is always 0.
        self.side_tables = nn.ModuleDict(
            {v: SparseEmbedding(word2vec_init(side_sizes[v] + 1, dim, gen)) for v in self.views}
        )
        self.attention = SparseEmbedding(torch.zeros(num_items, 1 + len(self.views)))
        self.context = SparseEmbedding(torch.zeros(num_items, dim))
        cols = [np.where(side[v] >= 0, side[v], side_sizes[v]).astype(np.int64) for v in self.views]
        side_rows = np.stack(cols, axis=1) if cols else np.zeros((num_items, 0), dtype=np.int64)
        known = [np.ones(num_items, dtype=bool)] + [side[v] >= 0 for v in self.views]
        self.register_buffer("side_rows", torch.from_numpy(side_rows), persistent=False)
        self.register_buffer("side_known", torch.from_numpy(np.stack(known, axis=1)), persistent=False)

    def combined(self, rows: Tensor) -> Tensor:
        """``H`` of item rows ``[B]`` -> ``[B, dim]`` (equation 6), differentiable in every table."""
        side_rows = self.side_rows[rows]
        views = [table(self.item).gather(rows)] + [
            table(self.side_tables[v]).gather(side_rows[:, i]) for i, v in enumerate(self.views)
        ]
        return attention_combine(
            torch.stack(views, dim=1), table(self.attention).gather(rows), self.side_known[rows]
        )

    def loss(self, batch: EgesBatch) -> Tensor:
        ctx = table(self.context)
        return sgns_loss(
            self.combined(batch.centres),
            ctx.gather(batch.contexts),
            ctx.gather(batch.negatives),
            neg_scale=self.negatives / max(len(batch.negatives), 1),
        )

    @torch.no_grad()
    def side_only(self, side: Mapping[str, IntArray]) -> np.ndarray:
        """EGES's cold-start rule: the mean of an item's side-information vectors (no item vector, no
        learned attention), for items given by their rows in each side view (``-1`` unknown) -> float32
        ``[n, dim]``; an item with no known side value gets a zero vector."""
        n = len(next(iter(side.values()))) if side else 0
        total = torch.zeros(n, table(self.item).weight.shape[1])
        known = torch.zeros(n)
        for view in self.views:
            rows = torch.as_tensor(np.asarray(side[view], dtype=np.int64))
            weight = table(self.side_tables[view]).weight.detach().cpu()
            if len(rows) and int(rows.max()) >= weight.shape[0] - 1:
                raise ValueError(f"side[{view!r}]: rows must lie in [-1, {weight.shape[0] - 1})")
            use = rows >= 0
            total[use] += weight[rows[use]]
            known += use.float()
        return to_numpy(total / known.clamp(min=1.0).unsqueeze(1))

    @torch.no_grad()
    def vectors(self, chunk: int = 65536) -> np.ndarray:
        """``H`` of every item as float32 ``[num_items, dim]``."""
        n = table(self.item).num_rows
        device = self.side_rows.device
        parts = [
            to_numpy(self.combined(torch.arange(lo, min(lo + chunk, n), device=device)))
            for lo in range(0, n, chunk)
        ]
        return np.concatenate(parts)


def make_pair_batches(
    data: TrainData, s: EgesSettings, seed: int
) -> tuple[int, Callable[[int], Iterator[EgesBatch]]]:
    """Batch function over the skip-gram pairs of the training sequences, reshuffled every epoch;
    returns ``(expected steps per epoch, batches)``."""
    sampler = UnigramSampler(data.counts, s.neg_power)
    pool = pool_size(s.shared_negatives, data.n_items)
    steps = steps_for(int(count_pairs(data.seq_indptr, s.window, dynamic=s.dynamic_window)), s.batch_size)

    def batches(epoch: int) -> Iterator[EgesBatch]:
        rng = epoch_rng(seed, epoch)
        c, x = skipgram_pairs(data.seq_indptr, data.seq_tokens, s.window, rng, dynamic=s.dynamic_window)
        perm = rng.permutation(len(c))
        c, x = c[perm].astype(np.int64), x[perm].astype(np.int64)
        for lo, hi in batch_bounds(len(c), s.batch_size):
            yield EgesBatch(
                torch.from_numpy(c[lo:hi]),
                torch.from_numpy(x[lo:hi]),
                torch.from_numpy(sampler.sample(rng, pool)),
            )

    return steps, batches


def fit_eges(data: TrainData, *, seed: int = 0, settings: EgesSettings | None = None) -> ItemModel:
    """EGES attention-combined item vectors ``H`` (served by inner product)."""
    return ItemModel(vectors=train_eges(data, seed=seed, settings=settings).vectors(), metric="ip")


def train_eges(data: TrainData, *, seed: int = 0, settings: EgesSettings | None = None) -> Eges:
    """The trained EGES tables (for :meth:`Eges.vectors` and the cold-start :meth:`Eges.side_only`)."""
    s = settings or EgesSettings()
    if len(data.seq_tokens) < 2:
        raise ValueError("EGES needs training sequences with at least two tokens")
    sizes = {v: int(rows.max()) + 1 if len(rows) and rows.max() >= 0 else 0 for v, rows in data.side.items()}
    model = Eges(data.n_items, data.side, sizes, dim=s.dim, negatives=s.negatives, seed=seed)
    steps, batches = make_pair_batches(data, s, seed)
    fit_with_trainer(model, batches, epochs=s.epochs, lr=s.lr, seed=seed, steps_per_epoch=steps, name="eges")
    return model
