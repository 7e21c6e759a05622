"""Sessions (section 3.1 "session split and merge", A.1) as Ibis expressions.

Rules, applied per user over events in time order:

- the first event of a user opens a session;
- an idle gap ``>= session_gap_s`` opens a session (even inside one app session);
- without app session ids that is all; with them (column ``session_id``), a change of app session id
  also opens a session unless the gap is ``< session_merge_gap_s`` (the two app sessions are merged);
- with ``max_session_len`` a session longer than the cap is cut into consecutive chunks of the cap.

Sessions get global ids ``0..S-1`` ordered by user then time, computed from per-user counts (no global
window over events, so the stage scales out on Spark).
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Sequence

import ibis
import ibis.expr.types as ir

from offline.data.config import PrepareConfig

#: Sentinels that make the event order total on every engine (engines disagree on where nulls sort).
_NULL_INT = -(2**62)
_NULL_FLOAT = -1.0e300


def event_order(events: ir.Table) -> list[ir.Value]:
    """A total order of a user's distinct events: time, then every other column with nulls replaced."""
    keys: list[ir.Value] = [events.timestamp, events.item_id, events.behavior.fill_null("")]
    for col in events.columns:
        if col in ("user_id", "timestamp", "item_id", "behavior"):
            continue
        dtype = events[col].type()
        if dtype.is_integer():
            keys.append(events[col].fill_null(_NULL_INT))
        elif dtype.is_floating():
            keys.append(events[col].fill_null(_NULL_FLOAT))
        else:
            keys.append(events[col].cast("string").fill_null(""))
    return keys


def _fast_event_order(rows: ir.Table, config: PrepareConfig) -> list[ir.Value]:
    """:func:`event_order` for cleaned rows, with the behaviour string replaced by its rank in
    ``sorted(config.behaviors)``: cleaning keeps only those (never null), and byte order of strings is
    code-point order on every engine, so the order is the same while the sort key is a small integer."""
    keys = event_order(rows)
    ranks = [(rows.behavior == b, i) for i, b in enumerate(sorted(config.behaviors))]
    keys[2] = ibis.cases(*ranks, else_=len(ranks)).cast("int64")
    return keys


def assign_sessions(events: ir.Table, config: PrepareConfig, *, first_session: int = 0) -> ir.Table:
    """Add ``pos`` (1-based rank of the event in its user's history), ``user_events`` (the user's number
    of events, used by the per-user split without another window) and ``session`` (global id, numbered
    from ``first_session``).

    ``events`` must hold distinct canonical events (after :func:`offline.data.cleaning.clean`).
    """
    ranked = events.mutate(
        pos=ibis.row_number().over(group_by=events.user_id, order_by=event_order(events)) + 1
    )
    w = ibis.window(group_by=ranked.user_id, order_by=ranked.pos)
    prev_ts = ranked.timestamp.lag().over(w)
    gap = ranked.timestamp - prev_ts
    opens = prev_ts.isnull() | (gap >= config.session_gap_s)
    if "session_id" in ranked.columns:
        app = ranked.session_id.fill_null(_NULL_INT)
        changed = app != app.lag().over(w)
        opens = opens | (changed.fill_null(False) & (gap >= config.session_merge_gap_s))
    flagged = ranked.mutate(_open=opens.cast("int64"))
    cum = ibis.cumulative_window(group_by=flagged.user_id, order_by=flagged.pos)
    local = flagged.mutate(_local=flagged._open.sum().over(cum))
    if config.max_session_len is not None:
        # Chunks of the cap: the k-th event of a session (0-based) opens a chunk when k % cap == 0.
        k = ibis.row_number().over(group_by=[local.user_id, local._local], order_by=local.pos)
        rechunk = local.mutate(_open=((k % config.max_session_len) == 0).cast("int64"))
        cum = ibis.cumulative_window(group_by=rechunk.user_id, order_by=rechunk.pos)
        local = rechunk.mutate(_local=rechunk._open.sum().over(cum))
    return _global_ids(local, first_session).drop("_open")


def _global_ids(local: ir.Table, first_session: int = 0) -> ir.Table:
    """``_local`` (1-based session of the user) -> ``user_events`` and global ``session`` ids, numbered
    from ``first_session``.

    Offsets come from per-user counts and a window over users only (no global window over events).
    """
    per_user = local.group_by("user_id").aggregate(_n=local._local.max(), user_events=local.count())
    offsets = per_user.mutate(
        _offset=per_user._n.sum().over(ibis.cumulative_window(order_by=per_user.user_id)) - per_user._n
    ).select("user_id", "_offset", "user_events")
    joined = local.inner_join(offsets, "user_id")
    session = joined._offset + joined._local + (first_session - 1)
    return joined.mutate(session=session).drop("_local", "_offset")


def can_sessionise(config: PrepareConfig) -> bool:
    """Whether :func:`sessionise` applies: without a session cap (chunks of the cap need one more window)."""
    return config.max_session_len is None


def sessionise(rows: ir.Table, config: PrepareConfig, *, first_session: int = 0) -> ir.Table:
    """One-sort equivalent of ``assign_sessions(rows.distinct(), config)``.

    ``rows`` are cleaned rows still holding exact duplicates (``offline.data.cleaning.clean_rows``), and
    ``config.max_session_len`` must be None (:func:`can_sessionise`). Returns the distinct events with
    ``pos``, ``user_events`` and ``session`` (same values as :func:`assign_sessions`, plus
    ``first_session``: rows holding a range of users continue the numbering of the users before them).

    Plan: one window ordered by :func:`event_order` ranks the rows and reads the previous row (a
    duplicate is equal to it and is dropped); one window over that rank numbers the distinct events and
    counts session starts. Two sorts instead of a ``DISTINCT`` and three.
    """
    cols = list(rows.columns)
    w1 = ibis.window(group_by=rows.user_id, order_by=_fast_event_order(rows, config))
    lagged = rows.mutate(
        _rn=ibis.row_number().over(w1), **{f"_p__{c}": rows[c].lag().over(w1) for c in cols if c != "user_id"}
    )

    def prev(c: str) -> ir.Value:
        return lagged[f"_p__{c}"]

    dup = functools.reduce(operator.and_, [lagged[c].identical_to(prev(c)) for c in cols if c != "user_id"])
    gap = lagged.timestamp - prev("timestamp")
    opens = prev("timestamp").isnull() | (gap >= config.session_gap_s)
    if "session_id" in cols:
        changed = lagged.session_id.fill_null(_NULL_INT) != prev("session_id").fill_null(_NULL_INT)
        opens = opens | (changed.fill_null(False) & (gap >= config.session_merge_gap_s))
    # A duplicate sorts next to its original and shares its values: dropping it leaves every other
    # row's predecessor the same event, so the flags above hold for the distinct events.
    flagged = lagged.filter(~dup).select(*cols, "_rn", _open=opens.cast("int64"))
    w2 = ibis.window(group_by=flagged.user_id, order_by=flagged._rn)
    cum = ibis.cumulative_window(group_by=flagged.user_id, order_by=flagged._rn)
    local = flagged.select(*cols, pos=ibis.row_number().over(w2) + 1, _local=flagged._open.sum().over(cum))
    out = _global_ids(local, first_session)
    return out.select(*cols, "pos", "user_events", "session")


#: Rows one :func:`sessionise` (or :func:`assign_sessions`) pass takes per GiB of a one-process engine's
#: memory cap. Its window sorts stay in memory and near linear up to about this many rows (10M rows under
#: DuckDB's 4 GB cap); beyond it they spill and slow down super-linearly, so a larger log is sessionised
#: in user ranges.
SESSION_ROWS_PER_GIB = 3_000_000


def session_passes(rows: int, memory_bytes: int | None) -> int:
    """How many user ranges the sessions of ``rows`` rows are computed in: one when the engine spills per
    partition (``memory_bytes`` None) or the rows fit, else enough for each range to fit."""
    if memory_bytes is None or rows <= 0:
        return 1
    per_pass = max(1, int(SESSION_ROWS_PER_GIB * memory_bytes / 2**30))
    return -(-rows // per_pass)


def user_ranges(user_id: ir.Column, edges: Sequence[float]) -> list[ir.BooleanValue | None]:
    """Filters splitting users at ``edges`` (sorted, repeats dropped): ``user_id <= e[0]``, then each
    half-open range ``(e[i], e[i + 1]]``, then ``user_id > e[-1]``; ``[None]`` (no filter) without edges.
    Every user falls in exactly one range, and ranges come in user order."""
    bounds: list[float | None] = [None, *sorted(set(edges)), None]
    ranges: list[ir.BooleanValue | None] = []
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        conds = ([user_id > lo] if lo is not None else []) + ([user_id <= hi] if hi is not None else [])
        ranges.append(functools.reduce(operator.and_, conds) if conds else None)
    return ranges
