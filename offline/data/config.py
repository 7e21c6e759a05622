"""Typed, frozen configuration of the ``prepare`` stage (raw events -> dataset folder).

Every field has a type, a default and help text (its docstring below); ``__post_init__`` validates all
fields and the cross-field rules in one place and raises :class:`ConfigError` naming the bad field.
"""

from __future__ import annotations

import codecs
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from types import MappingProxyType
from typing import Any, Literal

from offline.data.timeparse import check_time_format, check_timezone

SplitKind = Literal["global_time", "per_user"]
Target = Literal["test", "valid"]
EdgeWeighting = Literal["behavior", "count"]

SPLITS: tuple[str, ...] = ("global_time", "per_user")
TARGETS: tuple[str, ...] = ("test", "valid")
EDGE_WEIGHTINGS: tuple[str, ...] = ("behavior", "count")
_VIEW_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class ConfigError(ValueError):
    """A configuration field has a bad value; the message names the field and what is allowed."""

    def __init__(self, field_name: str, message: str, owner: str = "PrepareConfig") -> None:
        super().__init__(f"{owner}.{field_name}: {message}")
        self.field = field_name


class BadInputError(ValueError):
    """Input data are unusable: missing columns, wrong types, or too many bad rows."""


def _default_weights() -> Mapping[str, float]:
    return MappingProxyType({"view": 1.0, "fav": 2.0, "cart": 3.0, "buy": 4.0, "rating": 1.0})


@dataclass(frozen=True)
class PrepareConfig:
    """Configuration of ``prepare_dataset``.

    Fields (help text):

    - ``views``: view names, the item (instance) view first; the event column of view ``v`` is
      ``f"{v}_id"`` except for the item view (``item_id``). Section 3.1 uses item, category, shop; any
      number is supported.
    - ``behaviors``: behaviour types kept to form sessions; events of other behaviours are dropped
      (and counted in the manifest).
    - ``behavior_weights``: edge weight contributed by a transition into a node, by the behaviour of
      that node's run (buy > cart > fav > view, NMTR-style multi-behaviour); used when
      ``edge_weighting == "behavior"``. Must cover every behaviour in ``behaviors``.
    - ``edge_weighting``: ``"behavior"`` (sum of behaviour weights) or ``"count"`` (number of
      transitions).
    - ``min_dwell_s``: drop events whose known dwell time is below this (section 3.1 "data clean").
    - ``session_gap_s``: start a new session after an idle gap of at least this many seconds.
    - ``session_merge_gap_s``: when the log has app session ids, two consecutive app sessions closer
      than this are merged (section 3.1 "session merge").
    - ``max_session_len``: cut sessions longer than this into consecutive chunks (A.1: 50); None = no cap.
    - ``time_window``: ``(start, end)`` unix seconds, half-open; events outside are dropped and counted
      (the Taobao sample has 35 out-of-window rows). None keeps all.
    - ``split``: ``"global_time"`` (one time cut for everybody, section 5.1.1) or ``"per_user"`` (each
      user's last ``test_fraction`` events by time).
    - ``test_days``: length of the test period for ``global_time`` (and of the validation period).
    - ``test_fraction``: share of each user's events held out for ``per_user`` (floor, so a user with
      fewer than ``1 / test_fraction`` events has none held out).
    - ``target``: ``"test"`` holds out the test period; ``"valid"`` drops the test period, carves the
      validation period (same size rule) from the end of train and labels it ``test`` (tuning datasets).
    - ``max_bad_row_share``: the job fails when the adapters' bad rows exceed this share of all rows.
    - ``walks_per_node``: random walks started from every node of every view graph (0 = none).
    - ``walk_length``: nodes per walk (including the start node).
    - ``p``, ``q``: node2vec return and in-out parameters (``p = q = 1`` is a weighted DeepWalk).
    - ``seed``: seed of the random walks.
    """

    views: tuple[str, ...] = ("item", "category")
    behaviors: tuple[str, ...] = ("view", "cart", "fav", "buy", "rating")
    behavior_weights: Mapping[str, float] = field(default_factory=_default_weights)
    edge_weighting: EdgeWeighting = "behavior"
    min_dwell_s: float = 2.0
    session_gap_s: int = 3600
    session_merge_gap_s: int = 1800
    max_session_len: int | None = None
    time_window: tuple[int, int] | None = None
    split: SplitKind = "global_time"
    test_days: float = 1.0
    test_fraction: float = 0.2
    target: Target = "test"
    max_bad_row_share: float = 0.01
    walks_per_node: int = 0
    walk_length: int = 10
    p: float = 1.0
    q: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        # Normalise containers first so a list or dict from a CLI/JSON is accepted and stays immutable.
        object.__setattr__(self, "views", tuple(self.views))
        object.__setattr__(self, "behaviors", tuple(self.behaviors))
        if not isinstance(self.behavior_weights, Mapping):
            raise ConfigError("behavior_weights", f"expected a mapping, got {type(self.behavior_weights)}")
        object.__setattr__(
            self, "behavior_weights", MappingProxyType({str(k): v for k, v in self.behavior_weights.items()})
        )
        if self.time_window is not None:
            object.__setattr__(self, "time_window", tuple(self.time_window))
        self._validate()

    def _validate(self) -> None:
        if not self.views:
            raise ConfigError("views", "at least one view (the item view) is required")
        for i, view in enumerate(self.views):
            if not isinstance(view, str) or not _VIEW_NAME.match(view):
                raise ConfigError(f"views[{i}]", f"{view!r} is not a lower-case identifier")
        if len(set(self.views)) != len(self.views):
            raise ConfigError("views", f"duplicate view names in {self.views}")
        if not self.behaviors:
            raise ConfigError("behaviors", "at least one behaviour is required")
        for i, b in enumerate(self.behaviors):
            if not isinstance(b, str) or not b:
                raise ConfigError(f"behaviors[{i}]", f"{b!r} is not a behaviour name")
        for name, w in self.behavior_weights.items():
            if isinstance(w, bool) or not isinstance(w, int | float) or not math.isfinite(w) or w <= 0:
                raise ConfigError(f"behavior_weights[{name!r}]", f"must be a finite number > 0, got {w!r}")
        missing = [b for b in self.behaviors if b not in self.behavior_weights]
        if missing and self.edge_weighting == "behavior":
            raise ConfigError("behavior_weights", f"no weight for behaviours {missing}")
        _choice("edge_weighting", self.edge_weighting, EDGE_WEIGHTINGS)
        _choice("split", self.split, SPLITS)
        _choice("target", self.target, TARGETS)
        _number("min_dwell_s", self.min_dwell_s, low=0.0)
        _integer("session_gap_s", self.session_gap_s, low=1)
        _integer("session_merge_gap_s", self.session_merge_gap_s, low=0)
        if self.session_merge_gap_s > self.session_gap_s:
            raise ConfigError(
                "session_merge_gap_s",
                f"{self.session_merge_gap_s} exceeds session_gap_s={self.session_gap_s}: a gap that splits "
                "a session could then merge two app sessions",
            )
        if self.max_session_len is not None:
            _integer("max_session_len", self.max_session_len, low=2)
        if self.time_window is not None:
            if len(self.time_window) != 2:
                raise ConfigError("time_window", f"expected (start, end), got {self.time_window!r}")
            _integer("time_window[0]", self.time_window[0], low=None)
            _integer("time_window[1]", self.time_window[1], low=None)
            if self.time_window[0] >= self.time_window[1]:
                raise ConfigError("time_window", f"start must be < end, got {self.time_window}")
        _number("test_days", self.test_days, low=0.0, strict=True)
        _number("test_fraction", self.test_fraction, low=0.0, strict=True)
        if self.test_fraction >= 1.0:
            raise ConfigError("test_fraction", f"must be < 1, got {self.test_fraction}")
        _number("max_bad_row_share", self.max_bad_row_share, low=0.0)
        if self.max_bad_row_share > 1.0:
            raise ConfigError("max_bad_row_share", f"must be <= 1, got {self.max_bad_row_share}")
        _integer("walks_per_node", self.walks_per_node, low=0)
        _integer("walk_length", self.walk_length, low=2)
        _number("p", self.p, low=0.0, strict=True)
        _number("q", self.q, low=0.0, strict=True)
        _integer("seed", self.seed, low=0)

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
        return replace(self, session_gap_s=gap_s, session_merge_gap_s=min(self.session_merge_gap_s, gap_s))

    @property
    def side_views(self) -> tuple[str, ...]:
        """Every view but the item view."""
        return self.views[1:]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (for the manifest)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["behavior_weights"] = dict(self.behavior_weights)
        out["views"] = list(self.views)
        out["behaviors"] = list(self.behaviors)
        if self.time_window is not None:
            out["time_window"] = list(self.time_window)
        return out


#: Delimiters ``LogFormat(delimiter=None)`` recognises from the first line (the most frequent one wins).
DELIMITERS = (",", "\t", ";", "|")
_DELIMITER_NAMES = {"tab": "\t", "\\t": "\t", "comma": ",", "semicolon": ";", "pipe": "|"}


@dataclass(frozen=True)
class LogFormat:
    """How a raw log file is read by the generic adapter (``offline.data.adapters.read_generic``).

    - ``delimiter``: one character (``tab``, ``\\t``, ``comma``, ``semicolon``, ``pipe`` are accepted
      names); ``None`` picks the most frequent of ``DELIMITERS`` on the first line.
    - ``header``: whether the first line names the columns; ``None``: yes when columns are mapped by
      name, else yes only when the first line's timestamp field does not parse and the second one does.
    - ``encoding``: text encoding of CSV files (``utf-8``, ``latin-1``, ...; any Python codec name).
    - ``time_format``: ``auto``, ``unix_s``, ``unix_ms``, ``iso`` or a strptime pattern
      (``offline.data.timeparse``).
    - ``timezone``: IANA zone of timestamps written without one (default ``UTC``).
    - ``behavior_map``: source behaviour -> canonical behaviour (``{"purchase": "buy"}``); values not
      in it are kept as they are (and dropped by cleaning unless a kept behaviour).
    """

    delimiter: str | None = None
    header: bool | None = None
    encoding: str = "utf-8"
    time_format: str = "auto"
    timezone: str = "UTC"
    behavior_map: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    def __post_init__(self) -> None:
        if self.delimiter is not None:
            delimiter = _DELIMITER_NAMES.get(self.delimiter, self.delimiter)
            if len(delimiter) != 1 or delimiter in '\r\n"':
                raise ConfigError(
                    "delimiter", f"expected one character (or tab), got {self.delimiter!r}", "LogFormat"
                )
            object.__setattr__(self, "delimiter", delimiter)
        try:
            object.__setattr__(self, "encoding", codecs.lookup(self.encoding).name)
        except LookupError:
            raise ConfigError(
                "encoding", f"unknown encoding {self.encoding!r}; e.g. utf-8, latin-1, cp1252", "LogFormat"
            ) from None
        for name, problem in (
            ("time_format", check_time_format(self.time_format)),
            ("timezone", check_timezone(self.timezone)),
        ):
            if problem:
                raise ConfigError(name, problem, "LogFormat")
        mapping = {str(k).strip(): str(v).strip() for k, v in dict(self.behavior_map).items()}
        for raw, canon in mapping.items():
            if not raw or not canon:
                raise ConfigError("behavior_map", f"empty behaviour in {raw!r}={canon!r}", "LogFormat")
        object.__setattr__(self, "behavior_map", MappingProxyType(mapping))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (for the manifest)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["behavior_map"] = dict(self.behavior_map)
        return out


def _choice(name: str, value: object, valid: tuple[str, ...]) -> None:
    if value not in valid:
        raise ConfigError(name, f"unknown value {value!r}; valid: {', '.join(valid)}")


def _number(name: str, value: object, *, low: float, strict: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(name, f"expected a finite number, got {value!r}")
    if value < low or (strict and value == low):
        raise ConfigError(name, f"must be {'>' if strict else '>='} {low}, got {value}")


def _integer(name: str, value: object, *, low: int | None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(name, f"expected an integer, got {value!r}")
    if low is not None and value < low:
        raise ConfigError(name, f"must be >= {low}, got {value}")
