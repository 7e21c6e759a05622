"""The diversity rows of the evaluation report, through the harness protocol with a fake retriever."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from offline.evaluation.config import ProtocolConfig
from offline.evaluation.diversity import diversity_rows, markdown_table, mean_over_seeds
from offline.evaluation.protocol import build_eval_data

# items 1,2 category 10; items 3,4 category 20; item 5 category 30
CATEGORY = {1: 10, 2: 10, 3: 20, 4: 20, 5: 30}


class FixedRetriever:
    """general: 2, 3, 4, 5 for every trigger; diversity: 5, 4, 3, 2 (trigger excluded)."""

    def batch_neighbours(self, item_ids: np.ndarray, mode: str, k: int) -> tuple[np.ndarray, np.ndarray]:
        order = [2, 3, 4, 5] if mode == "general" else [5, 4, 3, 2]
        ids = np.full((len(item_ids), k), -1, dtype=np.int64)
        width = min(k, len(order))
        ids[:, :width] = order[:width]
        scores = np.where(ids >= 0, -np.arange(k, dtype=np.float32), -np.inf).astype(np.float32)
        return ids, scores


def _data() -> tuple:
    rows = [
        (7, 1, 0, "train"),  # user 7: trigger 1 (category 10), recent categories {10}
        (7, 5, 10, "test"),  # a discovery (category 30)
        (8, 1, 0, "train"),  # user 8: test item 2 is in a recent category: no discovery truth
        (8, 2, 10, "test"),
        (9, 3, 0, "train"),  # user 9 has no test event; makes the categories of items 3 and 4 known
        (9, 4, 1, "train"),
    ]
    ev = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp", "split"])
    ev["category_id"] = ev["item_id"].map(CATEGORY)
    config = ProtocolConfig(ks=(50,))
    return build_eval_data(ev, np.arange(1, 6), category_column="category_id", config=config), config


def test_rows_filter_and_score_through_the_protocol() -> None:
    data, config = _data()
    rows = diversity_rows(data, FixedRetriever(), config)
    assert set(rows) == {"general", "general+filter", "diversity"}
    # general keeps item 2 (category 10, recent): 3 of 4 candidates are new-category
    assert rows["general"]["NewCategoryShare@50"] == pytest.approx(3 / 4)
    # filtering drops item 2 for both users; user 8 then misses its test item 2
    assert rows["general+filter"]["NewCategoryShare@50"] == 1.0
    assert rows["general"]["HitRate@50"] == 1.0
    assert rows["general+filter"]["HitRate@50"] == pytest.approx(0.5)
    assert rows["diversity"]["NewHitRate@50"] == 1.0
    assert rows["diversity"]["discovery_users"] == 1.0


def test_ks_must_contain_50() -> None:
    data, _ = _data()
    with pytest.raises(ValueError, match="must contain 50"):
        diversity_rows(data, FixedRetriever(), ProtocolConfig(ks=(20,)))


def test_mean_over_seeds_and_table() -> None:
    runs = [{"diversity": {"HitRate@50": 0.2}}, {"diversity": {"HitRate@50": 0.4}}]
    summary = mean_over_seeds(runs, metrics=("HitRate@50",))
    mean, std = summary["diversity"]["HitRate@50"]
    assert mean == pytest.approx(0.3) and std == pytest.approx(0.1)
    assert "| diversity | 0.3000 ± 0.1000 |" in markdown_table("MovieLens", summary)
    with pytest.raises(ValueError, match="at least one run"):
        mean_over_seeds([])
