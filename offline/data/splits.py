"""Train/test splits without leakage (Ibis, any backend).

- ``global_time`` (section 5.1.1, Taobao): one cut for everybody. The period ends at
  ``time_window[1]`` when a window is set (a calendar boundary), else one second after the last event;
  the last ``test_days`` before the end are ``test``.
- ``per_user`` (MovieLens): each user's last ``floor(n * test_fraction)`` events by time are ``test``.
- ``target == "valid"``: the test period is dropped and the same rule, applied to what is left, carves the
  validation period from the end of train; it is labelled ``test`` (the dataset used for tuning).

Vocabularies are built from ``train`` only by the later stages, so test events never leak into them.
"""

from __future__ import annotations

import ibis
import ibis.expr.types as ir

from offline.data.config import PrepareConfig

DAY_S = 86_400
# Keeps floor(n * fraction) stable when n * fraction is an integer up to rounding (e.g. 0.29 * 100).
_EPS = 1e-9


def time_cuts(end: int, config: PrepareConfig) -> tuple[int, int]:
    """``(lo, hi)``: events with ``lo <= timestamp < hi`` are held out; those at ``>= hi`` are dropped.

    ``end`` is the exclusive end of the data period.
    """
    period = round(config.test_days * DAY_S)
    if config.target == "test":
        return end - period, end
    return end - 2 * period, end - period


def label_split(events: ir.Table, config: PrepareConfig, *, end: int | None = None) -> ir.Table:
    """Add ``split``: ``'train'``, ``'test'``, or null for an event after the held-out period.

    ``events`` need ``pos`` (1-based rank in the user's history) and ``user_events`` (from
    ``assign_sessions``) for ``per_user``; a row-wise expression, no window; ``end`` (exclusive end of
    the period) is required for ``global_time``.
    """
    if config.split == "global_time":
        if end is None:
            raise ValueError("label_split: global_time needs the end of the data period")
        lo, hi = time_cuts(end, config)
        ts = events.timestamp
        split = ibis.cases((ts >= hi, ibis.null("string")), (ts >= lo, "test"), else_="train")
        return events.mutate(split=split)
    with_n = events.mutate(_n=events.user_events)
    n_test = (with_n._n * config.test_fraction + _EPS).floor().cast("int64")
    if config.target == "test":
        out = with_n.mutate(split=ibis.ifelse(with_n.pos > with_n._n - n_test, "test", "train"))
        return out.drop("_n")
    remaining = with_n._n - n_test
    n_valid = (remaining * config.test_fraction + _EPS).floor().cast("int64")
    staged = with_n.mutate(_m=remaining, _v=n_valid)
    split = ibis.cases(
        (staged.pos > staged._m, ibis.null("string")),
        (staged.pos > staged._m - staged._v, "test"),
        else_="train",
    )
    return staged.mutate(split=split).drop("_n", "_m", "_v")
