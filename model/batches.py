"""The M2GRL batch function: epoch number -> stream of :class:`M2GRLBatch` (numpy in, tensors out).

Scheduling: an epoch has ``n_steps = ceil(E[instance-view pairs] / (world * batch_size))`` steps. The
sequences of every view (and the item tokens that feed the alignment tasks) are shuffled, cut into
the same number of blocks (bounded memory: pairs are generated a block at a time), and every task's
block is cut into that block's share of steps. So each task sees its whole data once per epoch, in
the same number of steps as the instance view; all ranks run the same number of steps (collectives).

Alignment positives are ``(item, link[item])`` for every item *token* of the instance-view sequences,
so links are weighted by how often the item occurs, like the skip-gram pairs.
"""

from __future__ import annotations

import math
import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import numpy.typing as npt
import torch

from core.layout import relation_name
from model.m2grl import M2GRLBatch, RelationBatch, ViewBatch
from model.pairs import (
    UnigramSampler,
    count_pairs,
    select_sequences,
    shard_sequences,
    skipgram_pairs,
    split_even,
    validate_sequences,
)

Ragged = tuple[npt.NDArray[np.int64], npt.NDArray[np.int32]]
T = TypeVar("T")


@dataclass(frozen=True)
class M2GRLInputs:
    """Everything the batch function needs, as arrays.

    Attributes:
        sequences: view -> ``(indptr, tokens)`` ragged training sequences (vocabulary rows).
        counts: view -> ``[|vocab|]`` training counts (noise distribution of negatives).
        links: relation name -> ``[|item vocab|]`` row in the other view per item row (-1 unknown).
        relations: ``(item_view, other_view)`` pairs, matching ``links``.
    """

    sequences: Mapping[str, Ragged]
    counts: Mapping[str, npt.NDArray[np.int64]]
    links: Mapping[str, npt.NDArray[np.integer]]
    relations: Sequence[tuple[str, str]]

    def __post_init__(self) -> None:
        if not self.sequences:
            raise ValueError("inputs need the sequences of at least one view")
        for view, (indptr, tokens) in self.sequences.items():
            if view not in self.counts:
                raise ValueError(f"no counts for view {view!r}")
            try:
                validate_sequences(indptr, tokens, len(self.counts[view]))
            except ValueError as exc:
                raise ValueError(f"sequences of view {view!r}: {exc}") from exc
        for a, b in self.relations:
            rel = relation_name(a, b)
            if a not in self.sequences or b not in self.sequences:
                raise ValueError(f"relation {rel!r} needs views {a!r} and {b!r}; have {list(self.sequences)}")
            link = self.links.get(rel)
            if link is None:
                raise ValueError(f"no link table for relation {rel!r}")
            if len(link) != len(self.counts[a]):
                raise ValueError(
                    f"link table {rel!r} has {len(link)} rows, the {a!r} vocabulary {len(self.counts[a])}"
                )
            if len(link) and link.max() >= len(self.counts[b]):
                raise ValueError(
                    f"link table {rel!r} points past the {b!r} vocabulary ({len(self.counts[b])} rows)"
                )

    @property
    def views(self) -> list[str]:
        return list(self.sequences)

    def view_sizes(self) -> dict[str, int]:
        return {v: len(self.counts[v]) for v in self.sequences}


@dataclass(frozen=True)
class BatchSettings:
    """Sampling settings (see ``M2GRLConfig`` for their meaning)."""

    window: int = 9
    dynamic_window: bool = True
    negatives: int = 10
    shared_negatives: int = 64
    neg_power: float = 0.75
    batch_size: int = 2048
    block_tokens: int = 1_000_000
    prefetch: int = 0
    """Batches built ahead by a background thread (0: none, built in the training thread). numpy
    releases the GIL, so with a spare core pair generation overlaps the training step; the stream is
    the same either way. Off by default: with every core busy with intra-op threads it only competes."""


def steps_per_epoch(inputs: M2GRLInputs, settings: BatchSettings, world: int = 1) -> int:
    """Steps of one epoch (the same on every rank): instance-view pairs / (world * batch_size)."""
    indptr, _ = inputs.sequences[inputs.views[0]]
    pairs = count_pairs(indptr, settings.window, dynamic=settings.dynamic_window)
    return max(1, math.ceil(pairs / (world * settings.batch_size)))


def make_batch_fn(
    inputs: M2GRLInputs, settings: BatchSettings, *, seed: int = 0, rank: int = 0, world: int = 1
) -> Callable[[int], Iterator[M2GRLBatch]]:
    """The batch function of the shared trainer for M2GRL.

    Rank ``r`` of ``world`` trains on sequences ``r, r + world, ...`` of every view. The stream of an
    epoch depends only on ``(seed, epoch, rank, world)``, so a resumed run replays the same batches.
    Every view and every relation draws from its own random stream, and the instance view's is the one a
    model of that view alone draws: adding side views never changes the item view's pairs or negatives.
    """
    shards = {v: shard_sequences(*inputs.sequences[v], rank, world) for v in inputs.views}
    samplers = {v: UnigramSampler(inputs.counts[v], settings.neg_power) for v in inputs.views}
    n_steps = steps_per_epoch(inputs, settings, world)
    item_view = inputs.views[0]
    total_tokens = int(inputs.sequences[item_view][0][-1])
    n_blocks = max(1, min(n_steps, math.ceil(total_tokens / (world * settings.block_tokens))))
    block_steps = np.diff(split_even(n_steps, n_blocks))

    def batches(epoch: int) -> Iterator[M2GRLBatch]:
        stream = generate(epoch)
        return prefetch(stream, settings.prefetch) if settings.prefetch > 0 else stream

    def generate(epoch: int) -> Iterator[M2GRLBatch]:
        key = [seed, epoch, rank, world]
        rngs = {v: np.random.default_rng(key + [i] if i else key) for i, v in enumerate(inputs.views)}
        rel_rngs = {
            rel: np.random.default_rng(key + [len(inputs.views) + j])
            for j, rel in enumerate(relation_name(a, b) for a, b in inputs.relations)
        }
        orders = {v: rngs[v].permutation(len(shards[v][0]) - 1) for v in inputs.views}
        bounds = {v: split_even(len(orders[v]), n_blocks) for v in inputs.views}
        for block, steps in enumerate(block_steps):
            if steps == 0:
                continue
            view_pairs = {}
            for v in inputs.views:
                seqs = orders[v][bounds[v][block] : bounds[v][block + 1]]
                indptr, tokens = select_sequences(*shards[v], seqs)
                rng = rngs[v]
                c, x = skipgram_pairs(indptr, tokens, settings.window, rng, dynamic=settings.dynamic_window)
                perm = rng.permutation(len(c))
                view_pairs[v] = (c[perm], x[perm], split_even(len(c), int(steps)))
                if v == item_view:
                    item_tokens = tokens
            rel_pairs = {}
            for a, b in inputs.relations:
                rel = relation_name(a, b)
                if a == item_view:
                    items = rel_rngs[rel].permutation(item_tokens)
                else:
                    seqs = orders[a][bounds[a][block] : bounds[a][block + 1]]
                    items = rel_rngs[rel].permutation(select_sequences(*shards[a], seqs)[1])
                others = inputs.links[rel][items]
                keep = others >= 0
                rel_pairs[rel] = (b, items[keep], others[keep], split_even(int(keep.sum()), int(steps)))
            for s in range(int(steps)):
                batch = M2GRLBatch()
                for v, (c, x, cut) in view_pairs.items():
                    lo, hi = cut[s], cut[s + 1]
                    batch.views[v] = ViewBatch(
                        torch.from_numpy(c[lo:hi].astype(np.int64)),
                        torch.from_numpy(x[lo:hi].astype(np.int64)),
                        torch.from_numpy(samplers[v].sample(rngs[v], settings.shared_negatives)),
                    )
                for rel, (b, items, others, cut) in rel_pairs.items():
                    lo, hi = cut[s], cut[s + 1]
                    neg = samplers[b].sample(rel_rngs[rel], (int(hi - lo), settings.negatives))
                    pos = others[lo:hi].astype(np.int64)
                    batch.relations[rel] = RelationBatch(
                        torch.from_numpy(items[lo:hi].astype(np.int64)),
                        torch.from_numpy(pos),
                        torch.from_numpy(neg),
                        torch.from_numpy((neg != pos[:, None]).astype(np.float32)),
                    )
                yield batch

    return batches


class _Failed:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


_DONE = object()


def prefetch(items: Iterable[T], depth: int) -> Iterator[T]:
    """``items`` in order, produced up to ``depth`` ahead by a daemon thread.

    An exception of the producer is re-raised in the consumer; a consumer that stops early (or
    fails) stops the producer at its next item.
    """
    if depth < 1:
        raise ValueError(f"depth must be >= 1, got {depth}")
    box: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def offer(item: object) -> bool:
        while not stop.is_set():
            try:
                box.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not offer(item):
                    return
        except BaseException as exc:  # handed to the consumer, which re-raises it
            offer(_Failed(exc))
        else:
            offer(_DONE)

    worker = threading.Thread(target=produce, name="batch-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            item = box.get()
            if item is _DONE:
                return
            if isinstance(item, _Failed):
                raise item.exc
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        worker.join(timeout=1.0)
