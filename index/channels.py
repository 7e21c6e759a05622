"""Retrieval channels and the rule that merges them into one general-mode answer.

A channel is one precomputed item-to-item ranking stored in an index version: ``m2grl`` (the general
mode's embedding neighbours), ``cooc`` (the Item-CF co-occurrence map built beside it), ``popular``
(the training items most users reached: one *shared* list, a map of a single row that every trigger reads,
itself left out) or ``category_popular`` (the items most users reached in the trigger's category, a map
like ``cooc``). A variant serves a *mix*, ``{channel: weight}``, merged by weighted reciprocal-rank
fusion::

    score(i) = sum over channels c listing i of  w_c / (RANK_OFFSET + rank_c(i))     (rank from 1)

Ranks, not raw scores, because channels score on different scales (cosine vs co-occurrence); the
offset of 60 is the usual one for reciprocal-rank fusion and keeps a channel's top few from
dominating. Each item appears once; ties go to the channel first in ``CHANNELS`` order (which
``check_mix`` gives every mix), then the better rank.
Exclusions are applied by the caller after the merge (see ``ServingIndex.mixed_neighbours``).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from core.types import IntArray

#: Channel name -> the stored map serving it (``m2grl`` is the general mode's own map and index).
CHANNEL_MODES: dict[str, str] = {
    "m2grl": "general",
    "cooc": "cooc",
    "popular": "popular",
    "category_popular": "category_popular",
}
CHANNELS: tuple[str, ...] = tuple(CHANNEL_MODES)
#: The additive offset of reciprocal-rank fusion.
RANK_OFFSET = 60.0
#: The mix served when neither the variant nor the index version names one.
SINGLE_MIX: dict[str, float] = {"m2grl": 1.0}


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

    ``lists[j]`` is channel ``j``'s ranking, best first, each row at most once; ``weights[j]`` its
    weight. Pure: the result depends only on the lists' order and the weights.
    """
    if len(lists) != len(weights):
        raise ValueError(f"{len(lists)} ranked lists but {len(weights)} weights")
    valid = []
    for ranked in lists:
        arr = np.asarray(ranked, dtype=np.int64).ravel()
        valid.append(arr[arr >= 0])
    size = max((int(a.max()) + 1 for a in valid if a.size), default=0)
    return fuse(valid, weights, FuseScratch(size))


_RECIPROCAL: npt.NDArray[np.float64] = np.empty(0)


def _reciprocal_ranks(n: int) -> npt.NDArray[np.float64]:
    """``1 / (RANK_OFFSET + rank)`` for ranks 1..n (cached: the request path fuses every answer)."""
    global _RECIPROCAL
    if len(_RECIPROCAL) < n:
        _RECIPROCAL = 1.0 / (RANK_OFFSET + 1.0 + np.arange(max(n, 2 * len(_RECIPROCAL)), dtype=np.float64))
    return _RECIPROCAL[:n]


class FuseScratch:
    """Zeroed per-row buffers (a fused score and a channel bit mask per row) that :func:`fuse`
    accumulates into and clears again: no sort is needed to find repeated rows. One per thread."""

    def __init__(self, rows: int) -> None:
        self.scores = np.zeros(rows, dtype=np.float64)
        self.masks = np.zeros(rows, dtype=np.int64)


def fuse(
    lists: Sequence[npt.NDArray[np.integer[Any]]], weights: Sequence[float], scratch: FuseScratch
) -> Merged:
    """:func:`merge_ranked` for lists without padding or repeats within a list, rows below the size
    of ``scratch`` (left zeroed on return). Candidates keep their first appearance order (channel by
    channel) before one stable sort by fused score."""
    parts = []
    for j, (rows, weight) in enumerate(zip(lists, weights, strict=True)):
        new = rows[scratch.masks[rows] == 0]  # rows no earlier channel listed
        parts.append(new)
        scratch.masks[rows] |= 1 << j
        scratch.scores[rows] += weight * _reciprocal_ranks(len(rows))
    candidates = np.concatenate(parts).astype(np.int64, copy=False) if parts else np.empty(0, dtype=np.int64)
    fused = scratch.scores[candidates]
    sources = scratch.masks[candidates]
    scratch.scores[candidates] = 0.0
    scratch.masks[candidates] = 0
    order = np.argsort(-fused, kind="stable")  # ties: first appearance
    return Merged(candidates[order], fused[order], sources[order])


def source_names(mask: int, names: Sequence[str]) -> list[str]:
    """The channel names whose bits are set in ``mask`` (mix order)."""
    return [name for j, name in enumerate(names) if mask >> j & 1]


@functools.cache
def source_table(names: tuple[str, ...]) -> list[list[str]]:
    """``source_names`` of every mask of ``names`` (index = mask): one list lookup per candidate.
    Cached: the callers must not modify the lists."""
    return [source_names(mask, names) for mask in range(1 << len(names))]


def source_lists(
    sources: npt.NDArray[np.integer[Any]], names: tuple[str, ...]
) -> tuple[list[list[str]], dict[str, int]]:
    """Per candidate, the channel names of its mask in ``sources``; and per channel, how many candidates
    it listed (a candidate listed by two channels counts for both): one ``bincount`` instead of a count
    per candidate."""
    table = source_table(names)
    channels = [table[mask] for mask in sources.tolist()]
    counts = dict.fromkeys(names, 0)
    for mask, count in enumerate(np.bincount(sources, minlength=len(table)).tolist()):
        if count:
            for name in table[mask]:
                counts[name] += count
    return channels, counts


def channel_row(topn_ids: npt.NDArray[np.integer[Any]], row: int) -> npt.NDArray[np.integer[Any]]:
    """Trigger ``row``'s list in a channel map: its own row, or the one row of a shared map."""
    return topn_ids[0] if len(topn_ids) == 1 else topn_ids[row]


#: Name of the folder holding a version's precomputed default-mix map.
FUSED = "fused"


def fused_map(
    maps: Sequence[npt.NDArray[np.integer[Any]]],
    weights: Sequence[float],
    topn: int,
    *,
    progress: bool = False,
) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.float32], npt.NDArray[np.uint8]]:
    """The merged top-``topn`` of every row of the channel ``maps`` (row ids ``[n, W_j]``, or ``[1, W_j]``
    for a shared list; ``-1`` padded; the row itself is skipped), by :func:`fuse`: the precomputed answer
    of a mix, exactly what ``ServingIndex.mixed_neighbours`` computes at depth ``max W_j`` without
    exclusions. Returns ids (``-1`` padded), fused scores and channel masks, each ``[n, topn]``."""
    from tqdm.auto import tqdm

    n = max(len(m) for m in maps)
    ids = np.full((n, topn), -1, dtype=np.int32)
    scores = np.zeros((n, topn), dtype=np.float32)
    sources = np.zeros((n, topn), dtype=np.uint8)
    scratch = FuseScratch(n)
    for row in tqdm(range(n), desc="fused map", unit="item", disable=not progress, leave=False):
        lists = []
        for m in maps:
            ranked = np.asarray(channel_row(m, row), dtype=np.int64)
            lists.append(ranked[(ranked >= 0) & (ranked != row)])
        merged = fuse(lists, weights, scratch)
        width = min(topn, len(merged.rows))
        ids[row, :width] = merged.rows[:width]
        scores[row, :width] = merged.scores[:width]
        sources[row, :width] = merged.sources[:width]
    return ids, scores, sources
