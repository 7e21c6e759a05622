"""Types shared by all packages.

Ids: every id in the canonical event table is an ``int64`` (adapters factorise string ids such as
MovieLens genres and keep the labels). Inside artifacts, rows are *vocabulary indices* (``int32``)
into a per-view vocabulary array of original ids.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import TypeAlias

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
    """Answer of a neighbour lookup.

    ``exhausted`` is True when fewer than ``k`` candidates survive the exclusions even after
    searching the whole catalogue (so the caller can say so instead of padding).
    """

    trigger: ItemId
    candidates: list[Candidate]
    exhausted: bool
    filtered_out: int = 0
