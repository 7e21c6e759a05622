"""YouTube-DNN candidate generation (Covington et al., RecSys 2016), item side only.

Every position ``t >= 1`` of a training sequence is an example: the history is the up-to-``seq_len``
items before it in the sequence, its vector the average of their input embeddings; an MLP maps it
to a "user" vector ``u``, which scores the next item with ``u . e_j + b_j`` in a softmax over the true
item and a pool of sampled items shared by the batch (``learned.sampled_softmax_loss``; a pool item
equal to the target is dropped). The item vectors for item-to-item retrieval are the output
embeddings ``e``.

Settings (``YoutubeDnnSettings``), A.3 and deviations:

- Sequence length 30, embedding size 64, 64 hidden units and 1000 sampled items, as A.3. The MLP is
  ``64 -> 64 (ReLU) -> 64`` (linear output, so ``u`` can point anywhere, unlike a last ReLU layer).
- A.3 concatenates a user vector to the watch history; ``TrainData`` has no user per sequence
  (sequences are sessions), so the input is the history average alone, and no other features
  (search tokens, geography, age) exist here.
- Sampled softmax draws from ``count^0.75`` without the paper's importance (log Q) correction: the
  bias ``b`` absorbs the popularity and is not part of the item vectors.
- Batch 256 (A.3's default), the shared loop's Adam (lr 0.01; row-sparse on the tables), clipping 1.
  5 epochs (~1000 steps on MovieLens small), served by inner product on the output embeddings: both
  chosen on the MovieLens *valid* split (reports/tuning.md, section YouTube-DNN).
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
    masked_mean,
    pool_size,
    reset_dense_,
    sampled_softmax_loss,
    steps_for,
    table,
    to_numpy,
)


class YoutubeDnnSettings(SampledSoftmaxSettings):
    """YouTube-DNN hyper-parameters (see the module docstring)."""

    dim: int = Field(64, ge=1, description="Item embedding size, input and output (A.3: 64).")
    hidden: int = Field(64, ge=1, description="Units of the MLP's hidden layer (A.3: 64).")
    seq_len: int = Field(
        30, ge=1, description="Most recent items of the history that are averaged (A.3: 30)."
    )
    batch_size: int = Field(256, ge=1, description="Examples (prefixes) per step.")
    epochs: int = Field(5, ge=1, description="Epochs of the shared loop.")


def prefix_histories(
    indptr: npt.NDArray[np.integer], tokens: npt.NDArray[np.integer], length: int
) -> tuple[IntArray, IntArray]:
    """Every (history, next item) example of ragged sequences, vectorised (a loop over ``length`` offsets).

    Returns:
        ``(history, target)``: int64 ``[n, length]`` items before each target, most recent first,
        ``-1`` past the start of the sequence; int64 ``[n]`` targets (every token but each sequence's first).
    """
    if length < 1:
        raise ValueError(f"length must be >= 1, got {length}")
    indptr = np.asarray(indptr, dtype=np.int64)
    tok = np.asarray(tokens, dtype=np.int64)
    lengths = np.diff(indptr)
    start = np.repeat(indptr[:-1], lengths)
    pos = np.arange(len(tok))
    keep = pos > start
    pos, start = pos[keep], start[keep]
    history = np.full((len(pos), length), -1, dtype=np.int64)
    for offset in range(1, length + 1):
        inside = pos - offset >= start
        if not inside.any():
            break
        history[inside, offset - 1] = tok[pos[inside] - offset]
    return history, tok[pos]


@dataclass
class PrefixBatch:
    """``history`` ``[B, L]`` int64 rows (``-1`` padding), ``targets`` ``[B]`` and the shared pool ``[S]``."""

    history: Tensor
    targets: Tensor
    negatives: Tensor

    def __len__(self) -> int:
        return int(self.targets.shape[0])

    def to(self, device: torch.device) -> PrefixBatch:
        return PrefixBatch(self.history.to(device), self.targets.to(device), self.negatives.to(device))


class YoutubeDnn(nn.Module):
    """Input embeddings (plus a padding row), the MLP tower, output embeddings and biases.

    Tables are row-sparse, the MLP dense. ``seed`` seeds every initialisation: inputs and MLP uniform
    ``+-1/sqrt(fan_in)``, output embeddings and biases zero.
    """

    def __init__(self, num_items: int, *, dim: int = 64, hidden: int = 64, seed: int = 0) -> None:
        super().__init__()
        if num_items < 1:
            raise ValueError(f"num_items must be >= 1, got {num_items}")
        gen = torch.Generator().manual_seed(seed)
        self.num_items = num_items
        self.inputs = SparseEmbedding((torch.rand(num_items + 1, dim, generator=gen) * 2 - 1) / dim**0.5)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, dim))
        reset_dense_([self.mlp], gen)
        self.outputs = SparseEmbedding(torch.zeros(num_items, dim))
        self.bias = SparseEmbedding(torch.zeros(num_items, 1))

    def user_vectors(self, history: Tensor) -> Tensor:
        """``MLP(mean of the history's input embeddings)`` for ``[B, L]`` rows (``-1`` padding) -> ``[B, dim]``."""
        b, length = history.shape
        rows = torch.where(history >= 0, history, self.num_items).reshape(-1)
        emb = table(self.inputs).gather(rows).reshape(b, length, -1)
        return self.mlp(masked_mean(emb, history >= 0))

    def loss(self, batch: PrefixBatch) -> Tensor:
        out, bias = table(self.outputs), table(self.bias)
        return sampled_softmax_loss(
            self.user_vectors(batch.history),
            out.gather(batch.targets),
            out.gather(batch.negatives),
            bias.gather(batch.targets).squeeze(1),
            bias.gather(batch.negatives).squeeze(1),
            batch.targets.unsqueeze(1) == batch.negatives.unsqueeze(0),
        )

    @torch.no_grad()
    def vectors(self) -> np.ndarray:
        """Output item embeddings as float32 ``[num_items, dim]``."""
        return to_numpy(table(self.outputs).weight)


def make_prefix_batches(
    data: TrainData, s: YoutubeDnnSettings, seed: int
) -> tuple[int, Callable[[int], Iterator[PrefixBatch]]]:
    """Batch function over the shuffled prefixes of the training sequences; ``(steps per epoch, batches)``."""
    history, targets = prefix_histories(data.seq_indptr, data.seq_tokens, s.seq_len)
    if len(targets) == 0:
        raise ValueError("YouTube-DNN needs at least one training sequence of two or more items")
    sampler = UnigramSampler(data.counts, s.sample_power)
    pool = pool_size(s.samples, data.n_items)

    def batches(epoch: int) -> Iterator[PrefixBatch]:
        rng = epoch_rng(seed, epoch)
        order = rng.permutation(len(targets))
        for lo, hi in batch_bounds(len(order), s.batch_size):
            rows = order[lo:hi]
            yield PrefixBatch(
                torch.from_numpy(history[rows]),
                torch.from_numpy(targets[rows]),
                torch.from_numpy(sampler.sample(rng, pool)),
            )

    return steps_for(len(targets), s.batch_size), batches


def fit_youtube_dnn(
    data: TrainData, *, seed: int = 0, settings: YoutubeDnnSettings | None = None
) -> ItemModel:
    """YouTube-DNN output item embeddings (served by inner product)."""
    s = settings or YoutubeDnnSettings()
    steps, batches = make_prefix_batches(data, s, seed)
    model = YoutubeDnn(data.n_items, dim=s.dim, hidden=s.hidden, seed=seed)
    fit_with_trainer(
        model, batches, epochs=s.epochs, lr=s.lr, seed=seed, steps_per_epoch=steps, name="youtube-dnn"
    )
    return ItemModel(vectors=model.vectors(), metric="ip")
