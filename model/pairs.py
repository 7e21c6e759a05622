"""Vectorised skip-gram pair and negative generation from ragged sequences (numpy only).

Sequences are CSR-style: ``indptr`` (int64, ``n_seq + 1``) and ``tokens`` (int32 vocabulary rows), the
format of ``DatasetLayout.sequences``. Every function here loops over window offsets (at most ``c``
iterations) or over nothing; never over pairs or tokens.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from core.types import IntArray


def validate_sequences(
    indptr: npt.NDArray[np.integer], tokens: npt.NDArray[np.integer], vocab_size: int
) -> None:
    """Raise ``ValueError`` naming the problem when ``indptr``/``tokens`` are not a valid ragged array
    over a vocabulary of ``vocab_size`` rows."""
    if indptr.ndim != 1 or tokens.ndim != 1 or len(indptr) == 0:
        raise ValueError(
            f"indptr and tokens must be 1-D (indptr non-empty); got {indptr.shape}, {tokens.shape}"
        )
    if indptr[0] != 0 or indptr[-1] != len(tokens):
        raise ValueError(
            f"indptr must start at 0 and end at len(tokens)={len(tokens)}; got {indptr[0]}..{indptr[-1]}"
        )
    if np.any(np.diff(indptr) < 0):
        bad = int(np.argmax(np.diff(indptr) < 0))
        raise ValueError(f"indptr must be non-decreasing; indptr[{bad + 1}] < indptr[{bad}]")
    if len(tokens) and (tokens.min() < 0 or tokens.max() >= vocab_size):
        bad = int(np.argmax((tokens < 0) | (tokens >= vocab_size)))
        raise ValueError(
            f"token {int(tokens[bad])} at position {bad} is outside the vocabulary [0, {vocab_size})"
        )


def select_sequences(
    indptr: npt.NDArray[np.integer], tokens: npt.NDArray[np.integer], seqs: npt.NDArray[np.integer]
) -> tuple[IntArray, npt.NDArray[np.int32]]:
    """Sequences ``seqs`` (in that order) of a ragged array, as a new ragged array ``(indptr, tokens)``."""
    lengths = (indptr[1:] - indptr[:-1])[seqs]
    new_indptr = np.zeros(len(seqs) + 1, dtype=np.int64)
    np.cumsum(lengths, out=new_indptr[1:])
    # Position of every kept token in the original array: start of its sequence + offset inside it.
    seq_of = np.repeat(np.arange(len(seqs)), lengths)
    offset = np.arange(new_indptr[-1]) - new_indptr[:-1][seq_of]
    return new_indptr, tokens[indptr[:-1][seqs][seq_of] + offset].astype(np.int32, copy=False)


def shard_sequences(
    indptr: npt.NDArray[np.integer], tokens: npt.NDArray[np.integer], rank: int, world: int
) -> tuple[IntArray, npt.NDArray[np.int32]]:
    """Sequences ``rank, rank + world, ...``: the data shard of one rank."""
    if not 0 <= rank < world:
        raise ValueError(f"rank must be in [0, world={world}), got {rank}")
    return select_sequences(indptr, tokens, np.arange(rank, len(indptr) - 1, world))


def skipgram_pairs(
    indptr: npt.NDArray[np.integer],
    tokens: npt.NDArray[np.integer],
    window: int,
    rng: np.random.Generator | None = None,
    *,
    dynamic: bool = False,
) -> tuple[npt.NDArray[np.integer], npt.NDArray[np.integer]]:
    """All (centre, context) pairs of equation 1: tokens at distance ``1..window`` in the same sequence.

    Args:
        indptr, tokens: ragged sequences (see module docstring).
        window: the window c.
        rng: random source, needed only when ``dynamic``.
        dynamic: word2vec's reduced window: each centre draws ``b`` uniformly in ``1..window`` and keeps
            only contexts at distance ``<= b``.
    Returns:
        ``(centres, contexts)``, two arrays of equal length and of the tokens' dtype, grouped by offset
        (not shuffled).
        Both directions are emitted: ``(t_p, t_{p+o})`` and ``(t_{p+o}, t_p)``.
    """
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    n = len(tokens)
    if n < 2:
        empty = np.zeros(0, dtype=tokens.dtype)
        return empty, empty
    lengths = np.diff(indptr)
    seq_id = np.repeat(np.arange(len(lengths), dtype=np.int32), lengths)
    tok = np.asarray(tokens)
    if dynamic:
        if rng is None:
            raise ValueError("dynamic windows need an rng")
        reach = rng.integers(1, window + 1, size=n, dtype=np.int16)
    centres: list[IntArray] = []
    contexts: list[IntArray] = []
    for offset in range(1, min(window, n - 1) + 1):
        left = np.nonzero(seq_id[:-offset] == seq_id[offset:])[0]
        if len(left) == 0:
            break  # no sequence is longer than this offset, nor than any larger one
        right = left + offset
        if dynamic:
            fwd = left[reach[left] >= offset]  # centre on the left, context on the right
            bwd = right[reach[right] >= offset]  # centre on the right, context on the left
            centres += [tok[fwd], tok[bwd]]
            contexts += [tok[fwd + offset], tok[bwd - offset]]
        else:
            centres += [tok[left], tok[right]]
            contexts += [tok[right], tok[left]]
    if not centres:
        empty = np.zeros(0, dtype=tokens.dtype)
        return empty, empty
    return np.concatenate(centres), np.concatenate(contexts)


def count_pairs(indptr: npt.NDArray[np.integer], window: int, *, dynamic: bool = False) -> float:
    """Number of pairs :func:`skipgram_pairs` emits (the expectation when ``dynamic``), from lengths only."""
    lengths = np.diff(indptr).astype(np.float64)
    total = 0.0
    for offset in range(1, window + 1):
        per_offset = np.clip(lengths - offset, 0, None).sum() * 2
        # With a dynamic window, a centre keeps offset o with probability (window - o + 1) / window.
        total += per_offset * ((window - offset + 1) / window if dynamic else 1.0)
    return total


class UnigramSampler:
    """Draws rows from ``counts ** power`` (the noise distribution P_n of equation 3), vectorised.

    Rows with a zero count are never drawn. ``sample(rng, shape)`` returns an int64 array of rows.
    """

    def __init__(
        self, counts: npt.NDArray[np.integer] | npt.NDArray[np.floating], power: float = 0.75
    ) -> None:
        weights = np.asarray(counts, dtype=np.float64)
        if weights.ndim != 1 or len(weights) == 0:
            raise ValueError(f"counts must be a non-empty 1-D array, got shape {weights.shape}")
        if np.any(weights < 0) or not np.all(np.isfinite(weights)):
            raise ValueError("counts must be finite and >= 0")
        weights = np.where(weights > 0, weights**power, 0.0)
        if weights.sum() <= 0:
            raise ValueError("counts are all zero: nothing to sample negatives from")
        cdf = np.cumsum(weights)
        self.cdf = cdf / cdf[-1]
        self.probs = weights / weights.sum()

    def __len__(self) -> int:
        return len(self.cdf)

    def sample(self, rng: np.random.Generator, shape: int | tuple[int, ...]) -> IntArray:
        u = rng.random(shape)
        # side="right" with a normalised cdf never returns a zero-weight row (its cdf step is flat).
        rows = np.searchsorted(self.cdf, u, side="right")
        return np.minimum(rows, len(self.cdf) - 1).astype(np.int64)


def split_even(n: int, parts: int) -> IntArray:
    """Boundaries ``[0, ..., n]`` (length ``parts + 1``) cutting ``n`` items into ``parts`` near-equal runs."""
    return (np.arange(parts + 1, dtype=np.int64) * n) // parts
