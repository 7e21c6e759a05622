"""Retrieval channels and the rule that merges them into one general-mode answer.

A channel is one precomputed item-to-item ranking stored in an index version: ``m2grl`` (the general
mode's embedding neighbours) or ``cooc`` (the Item-CF co-occurrence map built beside it). A variant
serves a *mix*, ``{channel: weight}``, merged by weighted reciprocal-rank fusion::

    score(i) = sum over channels c listing i of  w_c / (RANK_OFFSET + rank_c(i))     (rank from 1)

Ranks, not raw scores, because channels score on different scales (cosine vs co-occurrence); the
offset of 60 is the usual one for reciprocal-rank fusion and keeps a channel's top few from
dominating. Each item appears once; ties go to the channel first in ``CHANNELS`` order (which
``check_mix`` gives every mix), then the better rank.
Exclusions are applied by the caller after the merge (see ``ServingIndex.mixed_neighbours``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

#: Channel name -> the stored map serving it (``m2grl`` is the general mode's own map and index).
CHANNEL_MODES: dict[str, str] = {"m2grl": "general", "cooc": "cooc"}
CHANNELS: tuple[str, ...] = tuple(CHANNEL_MODES)
#: The additive offset of reciprocal-rank fusion.
RANK_OFFSET = 60.0
#: The mix served when neither the variant nor the index version names one.
SINGLE_MIX: dict[str, float] = {"m2grl": 1.0}

IntArray = npt.NDArray[np.int64]


def check_mix(mix: Mapping[str, float], where: str = "channels") -> dict[str, float]:
    """A valid mix as a plain dict in ``CHANNELS`` order (the merge's tie order, whatever order a config
    file or a JSON manifest gave): known channel names, finite non-negative weights, a positive sum.
    Raises ``ValueError`` naming ``where`` and what is allowed."""
    if not mix:
        raise ValueError(f"{where}: name at least one channel among {list(CHANNELS)}")
    out: dict[str, float] = {}
    for name, weight in mix.items():
        if name not in CHANNEL_MODES:
            raise ValueError(f"{where}: unknown channel {name!r}; channels: {list(CHANNELS)}")
        w = float(weight)
        if not np.isfinite(w) or w < 0:
            raise ValueError(f"{where}.{name}: weight must be a finite number >= 0, got {weight!r}")
        out[name] = w
    if sum(out.values()) <= 0:
        raise ValueError(f"{where}: weights must sum to a positive number")
    return {c: out[c] for c in CHANNELS if c in out}


def parse_mix(text: str, where: str = "mix") -> dict[str, float]:
    """``"m2grl=0.5,cooc=0.5"`` -> a checked mix; ``ValueError`` naming the bad part otherwise."""
    mix: dict[str, float] = {}
    for part in (p.strip() for p in text.split(",")):
        name, sep, value = part.partition("=")
        try:
            weight = float(value)
        except ValueError:
            weight = None
        if not sep or weight is None or not name.strip():
            raise ValueError(
                f"{where}: expected channel=weight pairs like 'm2grl=0.5,cooc=0.5', got {part!r}"
            )
        mix[name.strip()] = weight
    return check_mix(mix, where)


@dataclass(frozen=True)
class Merged:
    """A merged ranking over index rows, best first: ``rows`` int64, fused ``scores`` float64 and, per
    row, the bit mask of the channels (bit ``j`` = ``j``-th channel of the mix) that listed it."""

    rows: IntArray
    scores: npt.NDArray[np.float64]
    sources: npt.NDArray[np.int64]


def merge_ranked(lists: Sequence[npt.ArrayLike], weights: Sequence[float]) -> Merged:
    """Fuse ranked row lists (``-1`` = padding, skipped) with the rule of the module docstring.

    ``lists[j]`` is channel ``j``'s ranking, best first; ``weights[j]`` its weight. Pure and exact:
    the result does not depend on anything but the lists' order and the weights.
    """
    if len(lists) != len(weights):
        raise ValueError(f"{len(lists)} ranked lists but {len(weights)} weights")
    rows_parts, score_parts, bit_parts, order_parts = [], [], [], []
    offset = 0
    for j, (ranked, weight) in enumerate(zip(lists, weights, strict=True)):
        arr = np.asarray(ranked, dtype=np.int64).ravel()
        valid = np.flatnonzero(arr >= 0)
        rows_parts.append(arr[valid])
        score_parts.append(float(weight) / (RANK_OFFSET + 1.0 + np.arange(len(valid), dtype=np.float64)))
        bit_parts.append(np.full(len(valid), 1 << j, dtype=np.int64))
        # first-appearance order: channel j's entries after every earlier channel's
        order_parts.append(offset + np.arange(len(valid), dtype=np.int64))
        offset += len(arr)
    rows = np.concatenate(rows_parts) if rows_parts else np.empty(0, dtype=np.int64)
    if rows.size == 0:
        return Merged(rows, np.empty(0, dtype=np.float64), np.empty(0, dtype=np.int64))
    contrib = np.concatenate(score_parts)
    bits = np.concatenate(bit_parts)
    first_seen = np.concatenate(order_parts)
    unique, inverse = np.unique(rows, return_inverse=True)
    fused = np.asarray(np.bincount(inverse, weights=contrib, minlength=len(unique)), dtype=np.float64)
    sources = np.zeros(len(unique), dtype=np.int64)
    np.bitwise_or.at(sources, inverse, bits)
    first = np.full(len(unique), np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(first, inverse, first_seen)
    order = np.lexsort((first, -fused))
    return Merged(unique[order], fused[order], sources[order])


def source_names(mask: int, names: Sequence[str]) -> list[str]:
    """The channel names whose bits are set in ``mask`` (mix order)."""
    return [name for j, name in enumerate(names) if mask >> j & 1]
