"""Sessions (section 3.1 "session split and merge", A.1) as Ibis expressions, and ragged sequences (numpy).

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

import ibis
import ibis.expr.types as ir
import numpy as np
import numpy.typing as npt

from offline.config import PrepareConfig

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


def assign_sessions(events: ir.Table, config: PrepareConfig) -> ir.Table:
    """Add ``pos`` (1-based rank of the event in its user's history), ``user_events`` (the user's number
    of events, used by the per-user split without another window) and ``session`` (global id).

    ``events`` must hold distinct canonical events (after :func:`offline.cleaning.clean`).
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
    per_user = local.group_by("user_id").aggregate(_n=local._local.max(), user_events=local.count())
    offsets = per_user.mutate(
        _offset=per_user._n.sum().over(ibis.cumulative_window(order_by=per_user.user_id)) - per_user._n
    ).select("user_id", "_offset", "user_events")
    joined = local.inner_join(offsets, "user_id")
    return joined.mutate(session=joined._offset + joined._local - 1).drop("_open", "_local", "_offset")


def ragged_from_sorted(groups: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """``indptr`` (int64, n_groups + 1) of rows grouped by ``groups`` (sorted, equal ids adjacent)."""
    if len(groups) == 0:
        return np.zeros(1, dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, groups[1:] != groups[:-1]])
    return np.r_[starts, len(groups)].astype(np.int64)


def collapse_consecutive(
    groups: npt.NDArray[np.int64], tokens: npt.NDArray[np.int32]
) -> npt.NDArray[np.bool_]:
    """Mask keeping the first token of every run of equal consecutive tokens inside a group."""
    if len(tokens) == 0:
        return np.zeros(0, dtype=bool)
    return np.r_[True, (tokens[1:] != tokens[:-1]) | (groups[1:] != groups[:-1])]
