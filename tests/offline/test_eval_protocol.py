"""Protocol: test users, triggers, ground truths, merging/filtering, and metrics through a retriever."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from offline.evaluation.config import ProtocolConfig
from offline.evaluation.protocol import (
    build_eval_data,
    compact,
    evaluate_retriever,
    merge_by_score,
    retrieve,
)
from tests.offline.eval_fakes import CATALOGUE, DAY, TABLE, TableRetriever, tiny_events


def _data(**kw: object):  # type: ignore[no-untyped-def]
    cfg = ProtocolConfig(ks=(1, 2), **kw)  # type: ignore[arg-type]
    return build_eval_data(tiny_events(), CATALOGUE, category_column="category_id", config=cfg), cfg


def _rows(indptr: np.ndarray, values: np.ndarray) -> list[list[int]]:
    return [values[indptr[i] : indptr[i + 1]].tolist() for i in range(len(indptr) - 1)]


def test_users_triggers_truth_and_recent_categories() -> None:
    data, _ = _data()
    assert data.users.tolist() == [1, 2]
    assert data.triggers.tolist() == [[12], [13]]
    assert _rows(data.truth_indptr, data.truth_items) == [[11, 13], [10, 14]]
    # User 1's last train event is day 30: days 15..30 hold categories 101 and 102.
    assert _rows(data.recent_cats_indptr, data.recent_cats) == [[101, 102], [100]]
    assert _rows(data.new_truth_indptr, data.new_truth_items) == [[13], [14]]


def test_last_m_triggers_most_recent_first() -> None:
    data, _ = _data(n_triggers=2)
    assert data.triggers.tolist() == [[12, 11], [13, -1]]


def test_exclude_seen_drops_train_items_from_truth() -> None:
    data, _ = _data(exclude_seen=True)
    assert _rows(data.truth_indptr, data.truth_items) == [[13], [10, 14]]


def test_exclude_seen_drops_a_user_whose_test_items_were_all_seen() -> None:
    # User 5 re-reads in test only the item they read in train: no ground truth is left under exclude_seen.
    extra = pd.DataFrame(
        [(5, 11, 0, "train", 101), (5, 11, 31 * DAY, "test", 101)], columns=tiny_events().columns
    )
    events = pd.concat([tiny_events(), extra], ignore_index=True)
    plain = ProtocolConfig(ks=(1, 2))
    assert build_eval_data(events, CATALOGUE, category_column="category_id", config=plain).users.tolist() == [
        1,
        2,
        5,
    ]
    cfg = ProtocolConfig(ks=(1, 2), exclude_seen=True)
    data = build_eval_data(events, CATALOGUE, category_column="category_id", config=cfg)
    assert data.users.tolist() == [1, 2]
    assert _rows(data.truth_indptr, data.truth_items) == [[13], [10, 14]]
    out = evaluate_retriever(data, TableRetriever(TABLE), "general", cfg)
    # u1: trigger 12 -> [13] after dropping seen 10, 11: hit (truth {13}); u2: 13 -> [10, 11]: hit at 0.
    assert out["users"] == 2
    assert out["HitRate@1"] == pytest.approx(1.0)
    assert out["Recall@2"] == pytest.approx((1 + 1 / 2) / 2)
    with pytest.raises(ValueError, match="an unseen one, with exclude_seen"):
        build_eval_data(extra, CATALOGUE, category_column="category_id", config=cfg)


def test_metrics_through_retriever_hand_computed() -> None:
    data, cfg = _data()
    out = evaluate_retriever(data, TableRetriever(TABLE), "general", cfg)
    # u1: trigger 12 -> [13, 10], hit at rank 0 (truth {11, 13}); u2: 13 -> [10, 11], hit at 0 (truth {10, 14}).
    assert out["HitRate@1"] == pytest.approx(1.0)
    assert out["Recall@1"] == pytest.approx(0.5)
    assert out["Precision@2"] == pytest.approx(0.5)
    assert out["Coverage@2"] == pytest.approx(3 / 4)
    # Discovery: u1 new truth {13} hit; u2 new truth {14} (cold) missed.
    assert out["NewHitRate@1"] == pytest.approx(0.5)
    # New categories: u1 13 (100), 10 (100) both new; u2 10 (100) recent, 11 (101) new -> 3 of 4.
    assert out["NewCategoryShare@2"] == pytest.approx(3 / 4)
    # Trigger categories: u1 12 -> 102, u2 13 -> 100. Candidates: u1 [13 (100), 10 (100)], u2 [10 (100),
    # 11 (101)]: only u2's 10 shares its trigger's category.
    assert out["TriggerCategoryShare@1"] == pytest.approx(1 / 2)
    assert out["TriggerCategoryShare@2"] == pytest.approx(1 / 4)
    # Truth: u1 {11 (101), 13 (100)} vs 102: none; u2 {10 (100), 14 (103)} vs 100: one -> 1 of 4 pairs.
    assert data.truth_trigger_category_share() == pytest.approx(1 / 4)
    assert out["users"] == 2


def test_exclusions_filter_candidates() -> None:
    data, cfg = _data(exclude_seen=True)
    ids, _ = retrieve(TableRetriever(TABLE), data, "general", cfg)
    # u1 saw 10, 11, 12: only 13 survives; u2 saw 13: 10, 11 survive.
    assert ids.tolist() == [[13, -1], [10, 11]]
    data, cfg = _data()
    ids, _ = retrieve(TableRetriever(TABLE), data, "general", cfg, exclude_recent_categories=True)
    assert ids.tolist() == [[13, 10], [11, 12]]
    ids, _ = retrieve(TableRetriever(TABLE), data, "general", cfg, exclude_trigger_category=True)
    # Trigger 12 is category 102, trigger 13 is category 100.
    assert ids.tolist() == [[13, 10], [11, 12]]


def test_merge_of_two_triggers_by_best_score() -> None:
    data, cfg = _data(n_triggers=2)
    ids, scores = retrieve(TableRetriever(TABLE), data, "general", cfg)
    # u1: from 12 [13 .9, 10 .5, ...], from 11 [13 .95, 10 .8, ...] -> 13 (.95), 10 (.8).
    assert ids.tolist() == [[13, 10], [10, 11]]
    assert scores[0].tolist() == pytest.approx([0.95, 0.8])


def test_merge_by_score_and_compact_units() -> None:
    ids = np.array([[5, 6, -1, 6, 7]], dtype=np.int64)
    scores = np.array([[0.1, 0.3, 9.0, 0.7, 0.2]], dtype=np.float32)
    m_ids, m_scores = merge_by_score(ids, scores, 4)
    assert m_ids.tolist() == [[6, 7, 5, -1]]
    assert m_scores[0, :3].tolist() == pytest.approx([0.7, 0.2, 0.1])
    c_ids, _ = compact(ids, scores, np.array([[False, True, True, True, True]]), 3)
    assert c_ids.tolist() == [[6, 6, 7]]


def test_block_size_splits_calls() -> None:
    data, _ = _data()
    fake = TableRetriever(TABLE)
    retrieve(fake, data, "general", ProtocolConfig(ks=(1, 2), block_size=1))
    assert [n for n, _ in fake.calls] == [1, 1]


def test_config_and_input_errors() -> None:
    with pytest.raises(ValueError, match="n_triggers"):
        ProtocolConfig(n_triggers=0)
    with pytest.raises(ValueError, match="ks"):
        ProtocolConfig(ks=())
    with pytest.raises(ValueError, match="lack columns"):
        build_eval_data(
            tiny_events().drop(columns="split"), CATALOGUE, category_column=None, config=ProtocolConfig()
        )
    events = tiny_events()
    events["split"] = "train"
    with pytest.raises(ValueError, match="no test user"):
        build_eval_data(events, CATALOGUE, category_column=None, config=ProtocolConfig())


def test_long_tail_buckets_score_ground_truth_by_train_count() -> None:
    from offline.evaluation.protocol import score_candidates

    rows = [  # (user, item, day, split): train counts 10 -> 2, 11 -> 3, 12 -> 1, 13 -> 1; 14 unseen
        (1, 10, 1, "train"), (1, 11, 2, "train"), (1, 10, 3, "train"),
        (2, 11, 1, "train"), (2, 12, 2, "train"), (2, 13, 3, "train"), (2, 11, 4, "train"),
        (1, 12, 9, "test"), (1, 14, 9, "test"), (2, 10, 9, "test"), (2, 13, 9, "test"),
    ]  # fmt: skip
    events = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp", "split"])
    events["timestamp"] *= DAY
    cfg = ProtocolConfig(ks=(2,), freq_buckets=((1, 1), (2, None)))
    data = build_eval_data(events, np.array([10, 11, 12, 13]), category_column=None, config=cfg)
    assert data.truth_train_counts.tolist() == [1, 0, 2, 1]  # truths [12, 14] and [10, 13]
    scores = score_candidates(data, np.array([[12, 11], [10, 11]]), cfg)
    # count 1: user 1 {12} hit, user 2 {13} missed; count >= 2: user 2 {10} hit; 14 is in no bucket
    assert scores["Freq1-1:users"] == 2 and scores["Freq1-1:HitRate@2"] == pytest.approx(0.5)
    assert scores["Freq1-1:Recall@2"] == pytest.approx(0.5)
    assert scores["Freq2+:users"] == 1 and scores["Freq2+:HitRate@2"] == pytest.approx(1.0)
    assert scores["Freq2+:Recall@2"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="freq_buckets"):
        ProtocolConfig(freq_buckets=((0, 2),))
