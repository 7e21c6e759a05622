"""Reading the dataset's events table (``DatasetLayout.events``) for what a later stage needs of it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from core.types import IdArray
from core.vocab import lookup


def train_first_seen(events_path: Path, item_ids: IdArray) -> IdArray:
    """int64 timestamp of each item's first training event, in ``item_ids`` order; raises ``ValueError``
    naming an item without one (ids from another dataset)."""
    table = pq.read_table(
        events_path, columns=["item_id", "timestamp"], filters=pc.field("split") == pa.scalar("train")
    )
    first = table.group_by("item_id").aggregate([("timestamp", "min")])
    ids = first.column("item_id").to_numpy().astype(np.int64)
    rows = lookup(np.asarray(item_ids, dtype=np.int64), ids)
    if len(rows) and int(rows.min()) < 0:
        missing = int(np.asarray(item_ids)[rows < 0][0])
        raise ValueError(f"{events_path}: item {missing} has no training event")
    return first.column("timestamp_min").to_numpy().astype(np.int64)[rows]
