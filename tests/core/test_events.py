"""``core.events``: what later stages read of the dataset's events table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from core.events import train_first_seen


def test_first_training_event_per_item_in_the_order_asked(tmp_path: Path) -> None:
    path = tmp_path / "events.parquet"
    table = {
        "item_id": [5, 3, 5, 3, 9, 9],
        "timestamp": [40, 30, 10, 50, 1, 70],
        "split": ["train", "train", "train", "train", "test", "train"],  # 9's test event is earlier
    }
    pq.write_table(pa.table(table), path)
    np.testing.assert_array_equal(train_first_seen(path, np.array([9, 3, 5])), [70, 30, 10])
    assert train_first_seen(path, np.array([], dtype=np.int64)).shape == (0,)
    with pytest.raises(ValueError, match="item 4 has no training event"):
        train_first_seen(path, np.array([3, 4]))
