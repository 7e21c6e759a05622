"""Test doubles for the evaluation tests: a fixed top-N map with the ServingIndex lookup signature."""

from __future__ import annotations

import numpy as np
import pandas as pd

DAY = 86_400


class TableRetriever:
    """``batch_neighbours`` over a fixed map ``{trigger: [(item, score), ...]}`` (test double only)."""

    def __init__(self, table: dict[int, list[tuple[int, float]]]) -> None:
        self.table = table
        self.calls: list[tuple[int, int]] = []

    def batch_neighbours(self, item_ids: np.ndarray, mode: str, k: int) -> tuple[np.ndarray, np.ndarray]:
        self.calls.append((len(item_ids), k))
        ids = np.full((len(item_ids), k), -1, dtype=np.int64)
        scores = np.full((len(item_ids), k), -np.inf, dtype=np.float32)
        for r, item in enumerate(item_ids.tolist()):
            row = self.table[item][:k]
            ids[r, : len(row)] = [i for i, _ in row]
            scores[r, : len(row)] = [s for _, s in row]
        return ids, scores


def tiny_events() -> pd.DataFrame:
    """Users 1 and 2 are test users; 3 has no test event; 4 has no train event; item 14 is cold."""
    rows = [
        (1, 10, 0, "train", 100),
        (1, 11, 20 * DAY, "train", 101),
        (1, 12, 30 * DAY, "train", 102),
        (1, 13, 31 * DAY, "test", 100),
        (1, 11, 32 * DAY, "test", 101),
        (1, 13, 33 * DAY, "test", 100),
        (2, 13, 0, "train", 100),
        (2, 10, 31 * DAY, "test", 100),
        (2, 14, 31 * DAY, "test", 103),
        (3, 10, 5, "train", 100),
        (4, 12, 31 * DAY, "test", 102),
    ]
    return pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp", "split", "category_id"])


TABLE = {
    10: [(11, 0.9), (12, 0.5), (13, 0.1)],
    11: [(13, 0.95), (10, 0.8), (12, 0.2)],
    12: [(13, 0.9), (10, 0.5), (11, 0.1)],
    13: [(10, 0.9), (11, 0.5), (12, 0.1)],
}
CATALOGUE = np.array([10, 11, 12, 13], dtype=np.int64)
