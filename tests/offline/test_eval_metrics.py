"""Metric functions against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from offline.evaluation import metrics as M

# Two users, K = 4.  User 0: truth {1, 2, 9}; candidates 1, 5, 2, 7 -> hits at ranks 0 and 2.
# User 1: truth {8}; candidates 3, 4, -1, -1 -> no hit (two pads).
CANDS = np.array([[1, 5, 2, 7], [3, 4, -1, -1]], dtype=np.int64)
T_INDPTR = np.array([0, 3, 4])
T_ITEMS = np.array([1, 2, 9, 8])


def test_hit_matrix_hand_computed() -> None:
    hits = M.hit_matrix(CANDS, T_INDPTR, T_ITEMS)
    assert hits.tolist() == [[True, False, True, False], [False, False, False, False]]


def test_pads_never_hit_even_if_truth_contains_minus_one() -> None:
    hits = M.row_isin(np.array([[-1, 4]]), np.array([0, 2]), np.array([-1, 4]))
    assert hits.tolist() == [[False, True]]


def test_row_isin_is_per_row() -> None:
    # 5 is in row 1's set only: row 0 must not match it.
    out = M.row_isin(np.array([[5, 6], [5, 6]]), np.array([0, 1, 2]), np.array([6, 5]))
    assert out.tolist() == [[False, True], [True, False]]


def test_accuracy_metrics_hand_computed() -> None:
    hits = M.hit_matrix(CANDS, T_INDPTR, T_ITEMS)
    sizes = M.truth_sizes(T_INDPTR)
    assert M.hit_rate_at_k(hits, 4) == pytest.approx(0.5)
    assert M.hit_rate_at_k(hits, 1) == pytest.approx(0.5)
    assert M.precision_at_k(hits, 4) == pytest.approx((2 / 4 + 0) / 2)
    assert M.precision_at_k(hits, 2) == pytest.approx((1 / 2) / 2)
    assert M.recall_at_k(hits, sizes, 4) == pytest.approx((2 / 3 + 0) / 2)
    assert M.recall_at_k(hits, sizes, 2) == pytest.approx((1 / 3) / 2)
    dcg = 1 / math.log2(2) + 1 / math.log2(4)
    idcg = 1 / math.log2(2) + 1 / math.log2(3) + 1 / math.log2(4)
    assert M.ndcg_at_k(hits, sizes, 4) == pytest.approx((dcg / idcg) / 2)
    # k=2: user 0 has one hit at rank 0, ideal has two.
    assert M.ndcg_at_k(hits, sizes, 2) == pytest.approx((1 / (1 + 1 / math.log2(3))) / 2)


def test_per_user_at_k_is_what_hitrate_and_recall_average() -> None:
    hits = M.hit_matrix(CANDS, T_INDPTR, T_ITEMS)
    hit, recall = M.per_user_at_k(hits, M.truth_sizes(T_INDPTR), 2)
    assert hit.tolist() == [1.0, 0.0] and recall.tolist() == pytest.approx([1 / 3, 0.0])
    for k in (1, 2, 4):
        hit, recall = M.per_user_at_k(hits, M.truth_sizes(T_INDPTR), k)
        assert hit.mean() == pytest.approx(M.hit_rate_at_k(hits, k))
        assert recall.mean() == pytest.approx(M.recall_at_k(hits, M.truth_sizes(T_INDPTR), k))


def test_paired_difference_hand_computed() -> None:
    # differences 1, 0, 0, 1: mean 0.5, sd (ddof 1) = sqrt(1/3), half-width 1.96 * sqrt(1/3) / 2
    diff, half = M.paired_difference([1, 1, 0, 1], [0, 1, 0, 0])
    assert diff == pytest.approx(0.5) and half == pytest.approx(1.96 * math.sqrt(1 / 3) / 2)
    # the same users' shared difficulty cancels: a constant lead has a zero-width interval
    assert M.paired_difference([0.9, 0.5, 0.2], [0.8, 0.4, 0.1]) == pytest.approx((0.1, 0.0))
    assert M.paired_difference([1, 0], [1, 0]) == (0.0, 0.0)
    with pytest.raises(ValueError, match="one value per user"):
        M.paired_difference([1, 0], [1, 0, 1])
    with pytest.raises(ValueError, match="one value per user"):
        M.paired_difference([1], [0])


def test_f1_matches_paper_table2_taobao_row() -> None:
    # Table 2, M2GRL Taobao: P=1.19%, R=12.65% -> F1=2.17%.
    assert M.f1_from(0.0119, 0.1265) == pytest.approx(0.0217, abs=1e-4)
    assert M.f1_from(0.0, 0.0) == 0.0


def test_accuracy_metrics_dict_and_coverage() -> None:
    out = M.accuracy_metrics(CANDS, T_INDPTR, T_ITEMS, (2, 4), catalogue_size=10)
    # Distinct non-pad items in top 4: {1, 5, 2, 7, 3, 4} = 6 of 10; top 2: {1, 5, 3, 4}.
    assert out["Coverage@4"] == pytest.approx(0.6)
    assert out["Coverage@2"] == pytest.approx(0.4)
    p, r = out["Precision@4"], out["Recall@4"]
    assert out["F1@4"] == pytest.approx(2 * p * r / (p + r))
    prefixed = M.accuracy_metrics(CANDS, T_INDPTR, T_ITEMS, (4,), catalogue_size=10, prefix="New")
    assert "NewHitRate@4" in prefixed and "NewCoverage@4" not in prefixed


def test_new_category_share_ignores_pads() -> None:
    new = np.array([[True, False, True, True], [True, True, True, True]])
    # Real candidates: 4 + 2 = 6; new among them: 3 (row 0) + 2 (row 1) = 5.
    assert M.candidate_share_at_k(new, CANDS, 4) == pytest.approx(5 / 6)
    assert M.candidate_share_at_k(new, CANDS, 1) == pytest.approx(1.0)


def test_errors_name_the_problem() -> None:
    hits = M.hit_matrix(CANDS, T_INDPTR, T_ITEMS)
    with pytest.raises(ValueError, match="k must be"):
        M.hit_rate_at_k(hits, 5)
    with pytest.raises(ValueError, match="non-empty ground truth"):
        M.recall_at_k(hits, np.array([1, 0]), 2)
    with pytest.raises(ValueError, match="truth_indptr"):
        M.hit_matrix(CANDS, np.array([0, 4]), T_ITEMS)
    with pytest.raises(ValueError, match="catalogue_size"):
        M.coverage_at_k(CANDS, 2, 0)
