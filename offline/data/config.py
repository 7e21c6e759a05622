"""Typed, frozen configuration of the ``prepare`` stage (raw events -> dataset folder), as ``core.config``
models: every field has a type, bounds, a default and its help; a bad value raises
:class:`~core.config.ConfigError` naming the field's path.
"""

from __future__ import annotations

import codecs
from collections.abc import Mapping
from typing import Annotated, Literal, Self

from pydantic import Field, ValidationInfo, field_validator, model_validator

from core.config import ConfigError, FrozenConfig
from offline.data.timeparse import check_time_format, check_timezone

__all__ = ["BadInputError", "ConfigError", "LogFormat", "PrepareConfig"]

SplitKind = Literal["global_time", "per_user"]
Target = Literal["test", "valid"]
EdgeWeighting = Literal["behavior", "count"]

ViewName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")]
Behaviour = Annotated[str, Field(min_length=1)]
Weight = Annotated[float, Field(gt=0, allow_inf_nan=False)]


class BadInputError(ValueError):
    """Input data are unusable: missing columns, wrong types, or too many bad rows."""


def _default_weights() -> dict[str, float]:
    return {"view": 1.0, "fav": 2.0, "cart": 3.0, "buy": 4.0, "rating": 1.0}


class PrepareConfig(FrozenConfig):
    """Configuration of ``prepare_dataset``.

    The event column of view ``v`` is ``f"{v}_id"`` except for the item view (``item_id``). Behaviour
    weights follow NMTR's multi-behaviour ordering (buy > cart > fav > view): a transition into a node
    weighs the behaviour of that node's run. ``target="valid"`` drops the test period and carves the
    validation period (same size rule) from the end of train, labelled ``test`` (tuning datasets).
    """

    views: tuple[ViewName, ...] = Field(
        ("item", "category"),
        min_length=1,
        strict=False,
        description="Views, the item view first (section 3.1: item, category, shop).",
    )
    behaviors: tuple[Behaviour, ...] = Field(
        ("view", "cart", "fav", "buy", "rating"),
        min_length=1,
        strict=False,
        description="Behaviours kept to form sessions; others are dropped and counted.",
    )
    behavior_weights: Mapping[str, Weight] = Field(
        default_factory=_default_weights,
        strict=False,
        description="Edge weight of a transition by the behaviour of the run it enters.",
    )
    edge_weighting: EdgeWeighting = Field(
        "behavior", description="behavior: sum of behaviour weights; count: number of transitions."
    )
    min_dwell_s: float = Field(
        2.0, ge=0, allow_inf_nan=False, description="Drop events whose known dwell time is below this."
    )
    session_gap_s: int = Field(
        3600, ge=1, description="An idle gap of at least this many seconds opens a session."
    )
    session_merge_gap_s: int = Field(
        1800, ge=0, description="With app session ids: consecutive app sessions closer than this merge."
    )
    max_session_len: int | None = Field(
        None,
        ge=2,
        description="Cut longer sessions into chunks of this many events (A.1: 50); none = no cap.",
    )
    time_window: tuple[int, int] | None = Field(
        None, strict=False, description="(start, end) unix seconds, half-open; events outside are dropped."
    )
    split: SplitKind = Field(
        "global_time",
        description="global_time: one time cut (section 5.1.1); per_user: each user's last events.",
    )
    test_days: float = Field(
        1.0, gt=0, allow_inf_nan=False, description="Days held out at the end of the log by global_time."
    )
    test_fraction: float = Field(
        0.2, gt=0, lt=1, description="Share of each user's events held out by per_user (floor)."
    )
    target: Target = Field(
        "test", description="test: hold out the test period; valid: the validation period."
    )
    max_bad_row_share: float = Field(
        0.01, ge=0, le=1, description="Fail when the adapters' bad rows exceed this share of all rows."
    )
    walks_per_node: int = Field(
        0, ge=0, description="Random walks started from every node of every view (0: none)."
    )
    walk_length: int = Field(10, ge=2, description="Nodes per walk, the start included.")
    p: float = Field(1.0, gt=0, allow_inf_nan=False, description="node2vec return parameter.")
    q: float = Field(1.0, gt=0, allow_inf_nan=False, description="node2vec in-out parameter.")
    seed: int = Field(0, ge=0, description="Seed of the random walks.")

    @model_validator(mode="after")
    def _cross_fields(self) -> Self:
        if len(set(self.views)) != len(self.views):
            raise ConfigError("views", f"duplicate view names in {self.views}")
        missing = [b for b in self.behaviors if b not in self.behavior_weights]
        if missing and self.edge_weighting == "behavior":
            raise ConfigError("behavior_weights", f"no weight for behaviours {missing}")
        if self.session_merge_gap_s > self.session_gap_s:
            raise ConfigError(
                "session_merge_gap_s",
                f"{self.session_merge_gap_s} exceeds session_gap_s={self.session_gap_s}: a gap that splits "
                "a session could then merge two app sessions",
            )
        if self.time_window is not None and self.time_window[0] >= self.time_window[1]:
            raise ConfigError("time_window", f"start must be < end, got {self.time_window}")
        return self

    @property
    def item_view(self) -> str:
        """The instance view (first in ``views``)."""
        return self.views[0]

    def column(self, view: str) -> str:
        """Event-table column of ``view``: ``item_id`` for the item view, else ``f"{view}_id"``."""
        return "item_id" if view == self.item_view else f"{view}_id"

    def with_session_gap(self, gap_s: int) -> PrepareConfig:
        """This config with ``session_gap_s = gap_s``; the app-session merge gap is lowered to it when
        larger (a merge gap above the split gap is refused)."""
        return self.replace(session_gap_s=gap_s, session_merge_gap_s=min(self.session_merge_gap_s, gap_s))

    @property
    def side_views(self) -> tuple[str, ...]:
        """Every view but the item view."""
        return self.views[1:]


#: Delimiters ``LogFormat(delimiter=None)`` recognises from the first line (the most frequent one wins).
DELIMITERS = (",", "\t", ";", "|")
_DELIMITER_NAMES = {"tab": "\t", "\\t": "\t", "comma": ",", "semicolon": ";", "pipe": "|"}


class LogFormat(FrozenConfig):
    """How a raw log file is read by the generic adapter (``offline.data.adapters.read_generic``).

    ``header=None``: yes when columns are mapped by name, else yes only when the first line's timestamp
    field does not parse and the second one does. Behaviours not in ``behavior_map`` are kept as they
    are (and dropped by cleaning unless a kept behaviour).
    """

    delimiter: str | None = Field(
        None, description="One character (or tab, comma, semicolon, pipe); none: sniffed from line 1."
    )
    header: bool | None = Field(None, description="Whether the first line names the columns; none: guessed.")
    encoding: str = Field("utf-8", description="Text encoding of CSV files, e.g. utf-8, latin-1, cp1252.")
    time_format: str = Field(
        "auto", description="auto, unix_s, unix_ms, iso or a strptime pattern (offline.data.timeparse)."
    )
    timezone: str = Field("UTC", description="IANA time zone of timestamps written without one.")
    behavior_map: Mapping[str, str] = Field(
        default_factory=dict,
        strict=False,
        description="Source behaviour -> canonical behaviour, e.g. purchase=buy.",
    )

    @field_validator("delimiter", mode="after")
    @classmethod
    def _one_character(cls, value: str | None) -> str | None:
        if value is None:
            return None
        delimiter = _DELIMITER_NAMES.get(value, value)
        if len(delimiter) != 1 or delimiter in '\r\n"':
            raise ValueError(f"expected one character (or tab), got {value!r}")
        return delimiter

    @field_validator("encoding", mode="after")
    @classmethod
    def _known_codec(cls, value: str) -> str:
        try:
            return codecs.lookup(value).name
        except LookupError:
            raise ValueError(f"unknown encoding {value!r}; e.g. utf-8, latin-1, cp1252") from None

    @field_validator("time_format", "timezone", mode="after")
    @classmethod
    def _time_settings(cls, value: str, info: ValidationInfo) -> str:
        check = check_time_format if info.field_name == "time_format" else check_timezone
        problem = check(value)
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("behavior_map", mode="after")
    @classmethod
    def _behaviours(cls, value: Mapping[str, str]) -> Mapping[str, str]:
        mapping = {str(k).strip(): str(v).strip() for k, v in value.items()}
        for raw, canon in mapping.items():
            if not raw or not canon:
                raise ValueError(f"empty behaviour in {raw!r}={canon!r}")
        return mapping
