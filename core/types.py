"""Types shared by all packages.

Ids: every id in the canonical event table is an ``int64`` (adapters factorise string ids such as
MovieLens genres and keep the labels). Inside artifacts, rows are *vocabulary indices* (``int32``)
into a per-view vocabulary array of original ids.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt

ItemId: TypeAlias = int
CategoryId: TypeAlias = int
UserId: TypeAlias = int

#: 1-D int64 array of original ids.
IdArray: TypeAlias = npt.NDArray[np.int64]
#: 1-D int32 array of vocabulary indices.
IndexArray: TypeAlias = npt.NDArray[np.int32]
#: 2-D float32 array ``[rows, dim]``.
Matrix: TypeAlias = npt.NDArray[np.float32]
#: int64 array of anything else: rows, counts, offsets.
IntArray: TypeAlias = npt.NDArray[np.int64]
#: float32 array: vectors and scores as indexed and served.
Float32Array: TypeAlias = npt.NDArray[np.float32]
#: float64 array: metrics, weights and statistics computed in double precision.
Float64Array: TypeAlias = npt.NDArray[np.float64]


class Mode(StrEnum):
    """Retrieval modes served by the index (section 4 of the paper: two downstream tasks)."""

    GENERAL = "general"
    DIVERSITY = "diversity"


class Behavior(StrEnum):
    VIEW = "view"
    CART = "cart"
    FAV = "fav"
    BUY = "buy"
    RATING = "rating"
    TAG = "tag"


@dataclass(frozen=True, slots=True)
class Candidate:
    """One retrieved item: original id, similarity score (higher is closer) and side attributes."""

    item_id: ItemId
    score: float
    attributes: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class NeighbourResult:
    """Answer of a neighbour lookup, best first.

    Candidates are stored column-wise (``item_ids``, ``scores``, one list per attribute view): on the
    serving path, building one ``Candidate`` per neighbour cost more than the lookup itself, so the
    service serialises ``records()`` and ``candidates`` is built only when asked for.
    ``exhausted`` is True when fewer than ``k`` candidates survive the exclusions even after
    searching the whole catalogue (so the caller can say so instead of padding).
    """

    trigger: ItemId
    item_ids: list[ItemId]
    scores: list[float]
    attributes: dict[str, list[int]]
    exhausted: bool
    filtered_out: int = 0
    #: per candidate, the retrieval channels that listed it (``index.channels``); None when not merged
    channels: list[list[str]] | None = None
    #: candidates listed by each channel (one candidate counts for every channel that listed it), as
    #: the metrics count them; None when not merged
    channel_counts: dict[str, int] | None = None
    #: per candidate, whether it is a cold item (placed from its side views); None: none is
    cold: list[bool] | None = None

    @classmethod
    def from_candidates(
        cls, trigger: ItemId, candidates: Sequence[Candidate], *, exhausted: bool, filtered_out: int = 0
    ) -> NeighbourResult:
        views = list(candidates[0].attributes) if candidates else []
        return cls(
            trigger=trigger,
            item_ids=[c.item_id for c in candidates],
            scores=[c.score for c in candidates],
            attributes={v: [c.attributes[v] for c in candidates] for v in views},
            exhausted=exhausted,
            filtered_out=filtered_out,
        )

    def __len__(self) -> int:
        return len(self.item_ids)

    @property
    def candidates(self) -> list[Candidate]:
        return [
            Candidate(item_id=i, score=s, attributes=a)
            for i, s, a in zip(self.item_ids, self.scores, self._attribute_dicts(), strict=True)
        ]

    def records(self) -> list[dict[str, Any]]:
        """The candidates as JSON-ready ``{"item_id", "score", "attributes", "cold"}`` dicts (plus
        ``channels`` when the answer was merged from channels)."""
        cold = self.cold if self.cold is not None else [False] * len(self.item_ids)
        if self.channels is not None:
            if len(self.attributes) == 1:  # the usual one view, its dicts built in the same pass
                ((view, column),) = self.attributes.items()
                return [
                    {"item_id": i, "score": s, "attributes": {view: a}, "channels": c, "cold": f}
                    for i, s, a, c, f in zip(
                        self.item_ids, self.scores, column, self.channels, cold, strict=True
                    )
                ]
            return [
                {"item_id": i, "score": s, "attributes": a, "channels": c, "cold": f}
                for i, s, a, c, f in zip(
                    self.item_ids, self.scores, self._attribute_dicts(), self.channels, cold, strict=True
                )
            ]
        if len(self.attributes) == 1:
            ((view, column),) = self.attributes.items()
            return [
                {"item_id": i, "score": s, "attributes": {view: a}, "cold": f}
                for i, s, a, f in zip(self.item_ids, self.scores, column, cold, strict=True)
            ]
        return [
            {"item_id": i, "score": s, "attributes": a, "cold": f}
            for i, s, a, f in zip(self.item_ids, self.scores, self._attribute_dicts(), cold, strict=True)
        ]

    def _attribute_dicts(self) -> list[dict[str, int]]:
        views = list(self.attributes)
        columns = [self.attributes[v] for v in views]
        # dict displays for the usual one or two views: ~4x faster than dict(zip(...)) per candidate
        if len(views) == 1:
            (v0,) = views
            return [{v0: a} for a in columns[0]]
        if len(views) == 2:
            v0, v1 = views
            return [{v0: a, v1: b} for a, b in zip(*columns, strict=True)]
        if not views:
            return [{} for _ in self.item_ids]
        return [dict(zip(views, vals, strict=True)) for vals in zip(*columns, strict=True)]
