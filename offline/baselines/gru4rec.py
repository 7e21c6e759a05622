"""GRU4Rec (Hidasi et al., ICLR 2016): a one-layer GRU over sessions predicting the next item.

Each training sequence is cut into windows of ``seq_len + 1`` tokens (stride ``seq_len``); the GRU reads
the first ``seq_len`` items of a window and, at every position, scores the next item with
``h_t . e_j + b_j`` over the true item and a pool of sampled items shared by the whole batch (sampled
softmax cross-entropy, ``learned.sampled_softmax_loss``; a pool item equal to an example's target is
dropped from that example). The item vectors for item-to-item retrieval are the output embeddings
``e`` (the bias ``b`` only carries popularity and is not part of them).

Settings (``Gru4RecSettings``), A.3 and deviations:

- One GRU layer and sequence length 30, as A.3; 64 embedding and hidden units (A.3 gives none;
  64 matches the other baselines' vector size).
- 1000 sampled items, as A.3 ("number of samples"), drawn from ``count^0.75`` (GRU4Rec's
  ``sample_alpha``) once per batch; capped at the catalogue size. No in-batch negatives and no
  session-parallel mini-batches: windows are independent, the hidden state starts at zero in each,
  so a window's first predictions see little context. A.3's "bucket size 10" is not reproduced: a
  bucket iterator (windows sorted by length within pools of 10 batches, to cut padding) cost Recall@50
  on the MovieLens valid split (reports/tuning.md, section GRU4Rec).
- Loss: softmax cross-entropy over the sampled pool (GRU4Rec's ``cross-entropy`` loss), optimised
  by the shared loop's Adam (lr 0.01 on the GRU, row-sparse on the tables), gradient clipping 1,
  no dropout.
- 10 epochs as A.3 (~440 steps of 64 windows on MovieLens small; longer runs overfit the output
  embeddings), served by inner product: both chosen on the MovieLens *valid* split (reports/tuning.md,
  section GRU4Rec).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
from pydantic import Field
from torch import Tensor, nn

from core.types import IntArray
from model.optim import SparseEmbedding
from model.pairs import UnigramSampler
from offline.baselines.base import ItemModel, TrainData
from offline.baselines.learned import (
    SampledSoftmaxSettings,
    batch_bounds,
    epoch_rng,
    fit_with_trainer,
    pool_size,
    reset_dense_,
    sampled_softmax_loss,
    steps_for,
    table,
    to_numpy,
)


class Gru4RecSettings(SampledSoftmaxSettings):
    """GRU4Rec hyper-parameters (see the module docstring)."""

    dim: int = Field(64, ge=1, description="Input embedding size.")
    hidden: int = Field(64, ge=1, description="GRU units = size of the output item embeddings.")
    seq_len: int = Field(30, ge=1, description="Positions per window (A.3: 30).")
    batch_size: int = Field(64, ge=1, description="Windows per step.")
    epochs: int = Field(10, ge=1, description="Epochs of the shared loop.")


def sequence_windows(
    indptr: npt.NDArray[np.integer], tokens: npt.NDArray[np.integer], length: int
) -> tuple[IntArray, IntArray]:
    """Cut ragged sequences into next-item windows, vectorised (no loop over sequences or tokens).

    A sequence of ``n >= 2`` tokens gives ``ceil((n - 1) / length)`` windows; window ``k`` reads tokens
    ``k*length .. k*length + length - 1`` and predicts the token after each. Sequences of one token
    give none.

    Returns:
        ``(inputs, targets)``, int64 ``[n_windows, length]``, ``-1`` where a position is past the end of
        its sequence (a window's valid positions are always a prefix).
    """
    if length < 1:
        raise ValueError(f"length must be >= 1, got {length}")
    indptr = np.asarray(indptr, dtype=np.int64)
    lengths = np.diff(indptr)
    n_win = np.where(lengths >= 2, -(-(lengths - 1) // length), 0)
    seq_of = np.repeat(np.arange(len(lengths)), n_win)
    first = np.cumsum(n_win) - n_win
    k = np.arange(len(seq_of)) - first[seq_of]
    start = indptr[:-1][seq_of] + k * length
    pos = start[:, None] + np.arange(length)[None, :]
    valid = pos + 1 < indptr[1:][seq_of][:, None]
    tok = np.asarray(tokens, dtype=np.int64)
    last = max(len(tok) - 1, 0)
    inputs = np.where(valid, tok[np.minimum(pos, last)], -1)
    targets = np.where(valid, tok[np.minimum(pos + 1, last)], -1)
    return inputs.astype(np.int64), targets.astype(np.int64)


@dataclass
class WindowBatch:
    """``inputs``/``targets`` ``[W, L]`` int64 item rows (``-1`` padding) and the shared pool ``[S]``."""

    inputs: Tensor
    targets: Tensor
    negatives: Tensor

    def __len__(self) -> int:
        """Predictions in the batch (valid positions)."""
        return int((self.targets >= 0).sum())

    def to(self, device: torch.device) -> WindowBatch:
        return WindowBatch(self.inputs.to(device), self.targets.to(device), self.negatives.to(device))


class Gru4Rec(nn.Module):
    """Input embeddings (plus a zero padding row), one GRU layer, output embeddings and biases.

    Tables are row-sparse; the GRU is dense. ``seed`` seeds every initialisation: inputs and GRU
    uniform ``+-1/sqrt(fan_in)``, output embeddings and biases zero (as word2vec's output vectors).
    """

    def __init__(self, num_items: int, *, dim: int = 64, hidden: int = 64, seed: int = 0) -> None:
        super().__init__()
        if num_items < 1:
            raise ValueError(f"num_items must be >= 1, got {num_items}")
        gen = torch.Generator().manual_seed(seed)
        self.num_items = num_items
        emb = (torch.rand(num_items + 1, dim, generator=gen) * 2 - 1) / dim**0.5
        emb[num_items] = 0.0
        self.inputs = SparseEmbedding(emb)
        self.gru = nn.GRU(dim, hidden, num_layers=1, batch_first=True)
        reset_dense_([self.gru], gen)
        self.outputs = SparseEmbedding(torch.zeros(num_items, hidden))
        self.bias = SparseEmbedding(torch.zeros(num_items, 1))

    def loss(self, batch: WindowBatch) -> Tensor:
        w, length = batch.inputs.shape
        rows = torch.where(batch.inputs >= 0, batch.inputs, self.num_items).reshape(-1)
        states, _ = self.gru(table(self.inputs).gather(rows).reshape(w, length, -1))
        valid = batch.targets >= 0
        query, target = states[valid], batch.targets[valid]
        out, bias = table(self.outputs), table(self.bias)
        return sampled_softmax_loss(
            query,
            out.gather(target),
            out.gather(batch.negatives),
            bias.gather(target).squeeze(1),
            bias.gather(batch.negatives).squeeze(1),
            target.unsqueeze(1) == batch.negatives.unsqueeze(0),
        )

    @torch.no_grad()
    def vectors(self) -> np.ndarray:
        """Output item embeddings as float32 ``[num_items, hidden]``."""
        return to_numpy(table(self.outputs).weight)


def make_window_batches(
    data: TrainData, s: Gru4RecSettings, seed: int
) -> tuple[int, Callable[[int], Iterator[WindowBatch]]]:
    """Batch function over the shuffled windows of the training sequences; ``(steps per epoch, batches)``."""
    inputs, targets = sequence_windows(data.seq_indptr, data.seq_tokens, s.seq_len)
    if len(inputs) == 0:
        raise ValueError("GRU4Rec needs at least one training sequence of two or more items")
    sampler = UnigramSampler(data.counts, s.sample_power)
    pool = pool_size(s.samples, data.n_items)
    lengths = (targets >= 0).sum(axis=1)

    def batches(epoch: int) -> Iterator[WindowBatch]:
        rng = epoch_rng(seed, epoch)
        order = rng.permutation(len(inputs))
        for lo, hi in batch_bounds(len(order), s.batch_size):
            rows = order[lo:hi]
            # Valid positions are a prefix and the GRU is causal: trimming the batch to its longest
            # window changes no output, and Taobao's sessions average ~7 items.
            width = int(lengths[rows].max())
            yield WindowBatch(
                torch.from_numpy(np.ascontiguousarray(inputs[rows, :width])),
                torch.from_numpy(np.ascontiguousarray(targets[rows, :width])),
                torch.from_numpy(sampler.sample(rng, pool)),
            )

    return steps_for(len(inputs), s.batch_size), batches


def fit_gru4rec(data: TrainData, *, seed: int = 0, settings: Gru4RecSettings | None = None) -> ItemModel:
    """GRU4Rec output item embeddings (served by inner product)."""
    s = settings or Gru4RecSettings()
    steps, batches = make_window_batches(data, s, seed)
    model = Gru4Rec(data.n_items, dim=s.dim, hidden=s.hidden, seed=seed)
    fit_with_trainer(
        model, batches, epochs=s.epochs, lr=s.lr, seed=seed, steps_per_epoch=steps, name="gru4rec"
    )
    return ItemModel(vectors=model.vectors(), metric="ip")
