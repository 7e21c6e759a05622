"""Fast parsing of the retrieval request: the ``item_id`` path parameter and the query string (``mode``,
``k``, ``exclude_categories``, ``exclude_recent``, ``recent_items``).

FastAPI's per-parameter validation cost about half of an /i2i request's server time (measured with
cProfile: ``solve_dependencies`` ~50%, then ~25% with the path parameter and the context dependency
alone), so the hot routes read their few parameters here and document them with ``openapi_extra``.
Errors are the same 422 ``bad_request`` bodies naming the field and what is allowed.

In a version with labels (``index.labels``), ``exclude_categories`` and ``recent_items`` of a labelled
view are comma-separated labels, read straight into dense ids (an unknown label is dropped: no item has
it); a label holding a comma can be given in the body of ``POST /i2i:batch`` only.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from app.errors import ApiError
from app.schemas import INT64_MAX, INT64_MIN
from index.labels import ViewLabels

MODES = ("general", "diversity")
_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})


@dataclass(frozen=True, slots=True)
class RetrievalQuery:
    mode: str
    k: int
    exclude_categories: tuple[int, ...]
    exclude_recent: bool
    recent_items: tuple[int, ...]


#: an integer as ids are written: ASCII digits, an optional minus, no leading zero, no "+", "_" or spaces
# (``int()`` alone reads "+356", "3_5_6", "000356", " 356 " and non-ASCII digits all as 356)
_INTEGER = re.compile(r"-?(?:0|[1-9][0-9]{0,18})")


#: the documented form of a list of ids (spaces around commas are tolerated but not documented; 18
#: digits at most keeps every documented value inside int64)
_ID = "-?(0|[1-9][0-9]{0,17})"
INT_LIST: dict[str, Any] = {"type": "string", "pattern": f"^({_ID}(,{_ID})*)?$"}


def _strict_int(raw: str) -> int | None:
    return int(raw) if _INTEGER.fullmatch(raw) else None


def _int_list(raw: str | None, field: str) -> tuple[int, ...]:
    if raw is None or not raw:
        return ()
    # spaces around the commas are tolerated in lists ("1, 2,3,"), nothing else
    parsed = [_strict_int(part.strip(" ")) for part in raw.split(",") if part.strip(" ")]
    values = None if any(v is None for v in parsed) else tuple(v for v in parsed if v is not None)
    # ids are int64: a larger number would overflow in the index lookup
    if values is None or not all(INT64_MIN <= v <= INT64_MAX for v in values):
        raise ApiError(
            422, "bad_request", f"query.{field}: expected comma-separated int64 integers, got {raw!r}",
            {field: "comma-separated integers"},
        )  # fmt: skip
    return values


def query_params(query_string: bytes) -> dict[str, str]:
    """The query string as ``{name: value}``, the last value of a repeated name winning (as Starlette's
    ``request.query_params``, without building its multi-dict). Without ``%`` or ``+`` nothing needs
    unquoting, and splitting on ``&`` and the first ``=`` gives what ``parse_qsl`` gives, for a third
    of its time."""
    text = query_string.decode("latin-1")
    if "%" in text or "+" in text:
        return dict(parse_qsl(text, keep_blank_values=True))
    return dict(part.partition("=")[::2] for part in text.split("&") if part)


def _label_list(raw: str | None, labels: ViewLabels) -> tuple[int, ...]:
    """Comma-separated labels as the dense ids of those ``labels`` knows (exact text, empty parts skipped)."""
    if raw is None or not raw:
        return ()
    return tuple(i for i in labels.ids_of(part for part in raw.split(",") if part) if i >= 0)


def parse_mode(params: Mapping[str, str]) -> str:
    """The ``mode`` query parameter (default ``general``); 422 listing the modes otherwise."""
    mode = params.get("mode", "general")
    if mode not in MODES:
        raise ApiError(422, "bad_request", f"query.mode: {mode!r} is not a mode", {"mode": list(MODES)})
    return mode


def parse_item_id(raw: str) -> int:
    """The ``{item_id}`` path segment as an int64; 422 naming the field otherwise."""
    value = _strict_int(raw)
    if value is None or not INT64_MIN <= value <= INT64_MAX:
        raise ApiError(
            422, "bad_request", f"path.item_id: expected an int64 integer, got {raw!r}",
            {"item_id": {"ge": INT64_MIN, "le": INT64_MAX}},
        )  # fmt: skip
    return value


def parse_retrieval_query(
    params: Mapping[str, str],
    *,
    default_k: int,
    max_k: int,
    categories: ViewLabels | None = None,
    items: ViewLabels | None = None,
) -> RetrievalQuery:
    """Validate the query parameters; raises ``ApiError`` (422) naming the bad one. ``categories`` and
    ``items`` are the served version's labels of the category and item views (None: integer ids)."""
    mode = parse_mode(params)
    raw_k = params.get("k")
    if raw_k is None:
        k = default_k
    else:
        k = _strict_int(raw_k) or 0
        if not 1 <= k <= max_k:
            raise ApiError(
                422, "bad_request", f"query.k: {raw_k!r} is not an integer from 1 to {max_k}",
                {"k": {"ge": 1, "le": max_k}},
            )  # fmt: skip
    raw_recent = params.get("exclude_recent", "false").lower()
    if raw_recent not in _TRUE and raw_recent not in _FALSE:
        raise ApiError(
            422, "bad_request", f"query.exclude_recent: {raw_recent!r} is not a boolean",
            {"exclude_recent": ["true", "false"]},
        )  # fmt: skip
    return RetrievalQuery(
        mode=mode,
        k=k,
        exclude_categories=_int_list(params.get("exclude_categories"), "exclude_categories")
        if categories is None
        else _label_list(params.get("exclude_categories"), categories),
        exclude_recent=raw_recent in _TRUE,
        recent_items=_int_list(params.get("recent_items"), "recent_items")
        if items is None
        else _label_list(params.get("recent_items"), items),
    )


def _param(
    name: str, description: str, schema: dict[str, Any], example: Any = None, *, where: str = "query"
) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "in": where, "required": where == "path",
                           "description": description, "schema": schema}  # fmt: skip
    if example is not None:
        out["example"] = example
    return out


def openapi_parameters(*, item_id: bool = False, recent_items: bool = False) -> dict[str, Any]:
    """``openapi_extra`` documenting the parameters parsed by ``parse_item_id`` (path ``item_id``, when
    asked) and ``parse_retrieval_query``."""
    params = [
        _param("mode", "general (similar items) or diversity (other categories).",
               {"type": "string", "enum": list(MODES), "default": "general"}, "diversity"),
        _param("k", "Candidates wanted, 1..max_k (default default_k).", {"type": "integer", "minimum": 1}, 50),
        _param("exclude_categories", "Comma-separated category ids to exclude (the dataset's own ids when "
               "its categories were strings).", INT_LIST, "3,7"),
        _param("exclude_recent", "General mode: also exclude the user's recent categories.",
               {"type": "boolean", "default": False}),
    ]  # fmt: skip
    if item_id:
        int64 = {"type": "integer", "format": "int64", "minimum": INT64_MIN, "maximum": INT64_MAX}
        params.insert(
            0,
            _param(
                "item_id",
                "Trigger item id (the dataset's own id when its item ids were strings).",
                int64,
                1193,
                where="path",
            ),
        )
    if recent_items:
        params.append(
            _param(
                "recent_items",
                "Comma-separated trigger items, newest first (else the user's events); the dataset's own ids "
                "when its item ids were strings.",
                INT_LIST,
                "1193,661",
            )  # fmt: skip
        )
    return {"parameters": params}
