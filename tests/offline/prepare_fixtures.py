"""Tiny hand-computed event logs shared by the offline pipeline tests."""

from __future__ import annotations

from pathlib import Path

import ibis.expr.types as ir
import pyarrow as pa
import pyarrow.parquet as pq

from offline.data.config import PrepareConfig
from offline.data.splits import label_split

# The end of the data period for the ten-event log: far enough that the one-day test period is empty,
# so every event is train and the sessions/edges below can be counted by hand.
TEN_END = 200_000


def ten_events() -> pa.Table:
    """Ten events, two users, views item and category; dwell known on one row.

    Hand count (session gap 3600 s, min dwell 2 s):

    - e7 (dwell 1 s) is dropped; e9 is an exact duplicate of e8 and is dropped -> 8 events.
    - user 1: [e1 e2 e3] | gap 4800 | [e4 e5]; user 2: [e6 e8] | gap 3600 | [e10] -> 4 sessions.
    - item runs: s0 10,11(view+cart); s1 12,10(buy); s2 12,10; s3 10
      -> edges 10->11 (count 1, weight cart=3) and 12->10 (count 2, weight buy 4 + view 1 = 5).
    - category runs: s0 1; s1 2,1; s2 2,1; s3 1 -> one edge 2->1 (count 2, weight 5).
    """
    rows = [
        # user, item, ts, behaviour, category, dwell
        (1, 10, 0, "view", 1, None),  # e1
        (1, 11, 100, "view", 1, None),  # e2
        (1, 11, 200, "cart", 1, None),  # e3
        (1, 12, 5000, "view", 2, None),  # e4
        (1, 10, 5100, "buy", 1, None),  # e5
        (2, 12, 50, "view", 2, None),  # e6
        (2, 12, 60, "view", 2, 1.0),  # e7: dwell below 2 s
        (2, 10, 70, "view", 1, None),  # e8
        (2, 10, 70, "view", 1, None),  # e9: duplicate of e8
        (2, 10, 3670, "fav", 1, None),  # e10: gap of exactly one hour
    ]
    cols = list(zip(*rows, strict=True))
    return pa.table(
        {
            "user_id": pa.array(cols[0], pa.int64()),
            "item_id": pa.array(cols[1], pa.int64()),
            "timestamp": pa.array(cols[2], pa.int64()),
            "behavior": pa.array(cols[3], pa.string()),
            "category_id": pa.array(cols[4], pa.int64()),
            "dwell_s": pa.array(cols[5], pa.float64()),
        }
    )


def ten_event_chunks(folder: Path) -> Path:
    """:func:`ten_events` as a folder of two parquet parts (the layout `m2grl synth` writes)."""
    table = ten_events()
    folder.mkdir()
    pq.write_table(table.slice(0, 5), folder / "part-00000.parquet")
    pq.write_table(table.slice(5), folder / "part-00001.parquet")
    return folder


def ten_config(**overrides: object) -> PrepareConfig:
    base: dict[str, object] = {"time_window": (0, TEN_END), "split": "global_time", "test_days": 1.0}
    return PrepareConfig(**(base | overrides))  # type: ignore[arg-type]


def events(rows: list[tuple[int, int, int]], **extra: list[object]) -> pa.Table:
    """Canonical events from ``(user, item, timestamp)`` rows; behaviour ``view``, category = item // 10."""
    users, items, stamps = (list(c) for c in zip(*rows, strict=True))
    data: dict[str, pa.Array] = {
        "user_id": pa.array(users, pa.int64()),
        "item_id": pa.array(items, pa.int64()),
        "timestamp": pa.array(stamps, pa.int64()),
        "behavior": pa.array(["view"] * len(rows), pa.string()),
        "category_id": pa.array([i // 10 for i in items], pa.int64()),
    }
    for name, values in extra.items():
        data[name] = pa.array(values)
    return pa.table(data)


def assign_split(events: ir.Table, config: PrepareConfig, *, end: int | None = None) -> ir.Table:
    """``label_split`` with the events after the held-out period dropped: the split of the whole log in
    one expression, the reference the streamed events file is checked against."""
    labelled = label_split(events, config, end=end)
    return labelled.filter(labelled.split.notnull())
