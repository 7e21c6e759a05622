"""The cold-item protocol's pure parts: truth restricted to a part, catalogue rows, scores by part."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from core.catalogue import Catalogue
from offline.evaluation.cold import cold_catalogue, cold_share, score_parts
from offline.evaluation.config import ProtocolConfig
from offline.evaluation.protocol import build_eval_data, restrict_truth
from tests.offline.eval_fakes import tiny_events

CONFIG = ProtocolConfig(ks=(1, 2))
# every item of the log: item 14 (user 2's test item) never occurs in train
ALL_ITEMS = np.array([10, 11, 12, 13, 14], dtype=np.int64)


def _rows(indptr: np.ndarray, values: np.ndarray) -> list[list[int]]:
    return [values[indptr[i] : indptr[i + 1]].tolist() for i in range(len(indptr) - 1)]


def data():  # type: ignore[no-untyped-def]
    return build_eval_data(tiny_events(), ALL_ITEMS, category_column="category_id", config=CONFIG)


def test_restrict_truth_to_cold_and_warm_parts() -> None:
    full = data()
    assert _rows(full.truth_indptr, full.truth_items) == [[11, 13], [10, 14]]
    cold, rows = restrict_truth(full, full.truth_train_counts == 0)
    assert rows.tolist() == [1] and cold.users.tolist() == [2] and cold.triggers.tolist() == [[13]]
    assert _rows(cold.truth_indptr, cold.truth_items) == [[14]]
    assert _rows(cold.new_truth_indptr, cold.new_truth_items) == [[14]]
    assert _rows(cold.seen_indptr, cold.seen_items) == [[13]]
    assert cold.truth_train_counts.tolist() == [0]
    warm, rows = restrict_truth(full, full.truth_train_counts > 0)
    assert rows.tolist() == [0, 1]
    assert _rows(warm.truth_indptr, warm.truth_items) == [[11, 13], [10]]
    # user 2's discovery truth was the cold item 14 alone
    assert _rows(warm.new_truth_indptr, warm.new_truth_items) == [[13], []]
    assert _rows(warm.recent_cats_indptr, warm.recent_cats) == [[101, 102], [100]]


def test_restrict_truth_checks_the_mask() -> None:
    with pytest.raises(ValueError, match="one entry per ground-truth item \\(4\\)"):
        restrict_truth(data(), np.ones(3, dtype=bool))


def test_scores_by_part_and_cold_share() -> None:
    # user 1 (truth 11, 13) gets [13, 10]; user 2 (truth 10, cold 14) gets [14, 11]
    candidates = np.array([[13, 10], [14, 11]], dtype=np.int64)
    parts = score_parts(data(), candidates, CONFIG)
    assert (
        parts["cold"]["users"] == 1 and parts["cold"]["HitRate@1"] == 1.0 and parts["cold"]["Recall@1"] == 1.0
    )
    assert parts["warm"]["HitRate@1"] == 0.5 and parts["warm"]["Recall@2"] == 0.25
    assert parts["all"]["users"] == 2 and parts["all"]["Recall@1"] == pytest.approx((0.5 + 0.5) / 2)
    assert cold_share(candidates, np.array([14]), (1, 2)) == {"ColdShare@1": 0.5, "ColdShare@2": 0.25}


def test_cold_catalogue_puts_warm_rows_first_then_cold_by_descending_id() -> None:
    catalogue = Catalogue(
        np.array([10, 12, 14, 20], dtype=np.int64), {"category": np.array([1, 2, -1, 2], dtype=np.int64)}
    )
    rows = cold_catalogue(np.array([12, 10]), np.array([5, 3]), catalogue)
    assert rows.items.tolist() == [12, 10, 20, 14] and rows.n_warm == 2 and rows.n_cold == 2
    assert rows.counts.tolist() == [5, 3, 0, 0]
    assert rows.attributes["category"].tolist() == [2, 1, 2, -1]
    assert rows.cold_attributes()["category"].tolist() == [2, -1]
    with pytest.raises(ValueError, match="1 vocabulary items are not in the catalogue \\(e.g. \\[11\\]\\)"):
        cold_catalogue(np.array([12, 11]), np.array([5, 3]), catalogue)
    titled = Catalogue(catalogue.items, {}, pa.array(["a", "b", "c", "d"]))
    assert cold_catalogue(np.array([10]), np.array([1]), titled).attributes == {}
