"""Cleaning of canonical events (Ibis, any backend): section 3.1 "data clean" and A.1.

Rules, in order (a dropped row is counted under the first rule that drops it):

1. ``missing id``: null ``user_id``, ``item_id`` or ``timestamp``;
2. ``out of window``: timestamp outside ``config.time_window`` (half-open), when set;
3. ``behaviour not kept``: behaviour not in ``config.behaviors``;
4. ``short dwell``: ``dwell_s`` known and below ``config.min_dwell_s``;
5. ``duplicate``: exact duplicate rows (all columns equal) keep one copy.
"""

from __future__ import annotations

import ibis
import ibis.expr.types as ir

from offline.data.config import BadInputError, PrepareConfig

REASONS = ("missing id", "out of window", "behaviour not kept", "short dwell")


def check_schema(events: ir.Table, config: PrepareConfig) -> None:
    """Raise ``BadInputError`` when a canonical column needed by ``config`` is missing or mistyped."""
    schema = events.schema()
    needed = {"user_id": "integer", "item_id": "integer", "timestamp": "integer", "behavior": "string"}
    needed |= {config.column(v): "integer" for v in config.side_views}
    for name, kind in needed.items():
        if name not in schema:
            raise BadInputError(
                f"events lack column {name!r} (views {list(config.views)} need it); found "
                f"{list(schema.names)}: map it (--column {name}=SOURCE) or choose the views (--views item)"
            )
        dtype = schema[name]
        ok = dtype.is_integer() if kind == "integer" else dtype.is_string()
        if not ok:
            raise BadInputError(f"events column {name!r} has type {dtype}, expected {kind}")
    for name in ("dwell_s", "rating"):
        if name in schema and not schema[name].is_numeric():
            raise BadInputError(f"events column {name!r} has type {schema[name]}, expected a number")


def canonical_columns(events: ir.Table, config: PrepareConfig) -> list[str]:
    """Columns kept downstream: ids, timestamp, behaviour, the views, then optional ones present."""
    cols = ["user_id", "item_id", "timestamp", "behavior", *(config.column(v) for v in config.side_views)]
    cols += [c for c in ("dwell_s", "rating", "session_id") if c in events.columns]
    return list(dict.fromkeys(cols))


def _drop_conditions(events: ir.Table, config: PrepareConfig) -> list[ir.BooleanValue]:
    """One boolean per rule of the module docstring (True = drop), each ignoring earlier rules."""
    missing = events.user_id.isnull() | events.item_id.isnull() | events.timestamp.isnull()
    if config.time_window is not None:
        start, end = config.time_window
        window = (events.timestamp < start) | (events.timestamp >= end)
    else:
        window = ibis.literal(False)
    behaviour = ~events.behavior.isin(list(config.behaviors)) | events.behavior.isnull()
    if "dwell_s" in events.columns:
        dwell = events.dwell_s.notnull() & (events.dwell_s < config.min_dwell_s)
    else:
        dwell = ibis.literal(False)
    return [missing, window, behaviour, dwell]


def clean_rows(events: ir.Table, config: PrepareConfig) -> ir.Table:
    """Rows passing rules 1-4, canonical columns only, exact duplicates *kept* (rule 5 is left to the
    caller: :func:`clean` collapses them with ``distinct``; ``offline.data.sessions.sessionise`` drops them in
    its sort, which saves a hash aggregate over every column)."""
    keep = ibis.literal(True)
    for cond in _drop_conditions(events, config):
        keep = keep & ~cond.fill_null(False)
    cols = canonical_columns(events, config)
    out = events.filter(keep).select(cols)
    casts = {c: out[c].cast("int64") for c in cols if c.endswith("_id") or c == "timestamp"}
    casts |= {c: out[c].cast("float64") for c in ("dwell_s", "rating") if c in cols}
    return out.mutate(**casts)


def clean(events: ir.Table, config: PrepareConfig) -> ir.Table:
    """Events passing every rule, exact duplicates collapsed, with the canonical columns only."""
    return clean_rows(events, config).distinct()


def drop_counts(events: ir.Table, config: PrepareConfig) -> ir.Table:
    """One-row table: ``rows`` read; per rule 1-4 (``missing_id``, ...) the rows it drops (first matching
    rule only); ``kept`` rows before de-duplication and their ``min_timestamp`` and ``max_timestamp``."""
    conds = [c.fill_null(False) for c in _drop_conditions(events, config)]
    aggs = {"rows": events.count()}
    earlier = ibis.literal(False)
    for reason, cond in zip(REASONS, conds, strict=True):
        aggs[reason.replace(" ", "_")] = (cond & ~earlier).cast("int64").sum().fill_null(0)
        earlier = earlier | cond
    aggs["kept"] = (~earlier).cast("int64").sum().fill_null(0)
    aggs["min_timestamp"] = events.timestamp.min(where=~earlier)
    aggs["max_timestamp"] = events.timestamp.max(where=~earlier)
    return events.aggregate(**aggs)
