"""ServingIndex lookups on a hand-computed example: points on a line, L2 (score = -squared distance).

Items 10..60 sit at x = 0, 1, 2, 3, 4, 5; categories 0, 1, 1, 2, 2, 3. From item 10 the ranking is
20 (-1), 30 (-4), 40 (-9), 50 (-16), 60 (-25). The map keeps the top 2.
"""

from __future__ import annotations

import numpy as np
import pytest

from index.errors import IndexNotReady, UnknownItem, UnknownMode, UnknownView
from index.serving import ServingIndex, _Mode
from index.topn import drop_own_group

ITEMS = np.array([10, 20, 30, 40, 50, 60], dtype=np.int64)
CATS = np.array([0, 1, 1, 2, 2, 3], dtype=np.int64)
LINE = np.arange(6, dtype=np.float32)[:, None]


@pytest.fixture
def line() -> ServingIndex:
    return ServingIndex.from_vectors(
        ITEMS, {"category": CATS}, {"diversity": LINE}, {"diversity": "l2"}, topn=2
    )


def ids(result) -> list[int]:
    return [c.item_id for c in result.candidates]


def test_map_answers_without_search(line: ServingIndex, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_search(*args: object, **kwargs: object) -> None:
        raise AssertionError("the precomputed map should answer this lookup")

    monkeypatch.setattr(_Mode, "search", no_search)
    result = line.neighbours(10, "diversity", 2)
    assert ids(result) == [20, 30]
    assert [c.score for c in result.candidates] == [-1.0, -4.0]
    assert result.candidates[0].attributes == {"category": 1}
    assert not result.exhausted and result.filtered_out == 0


def test_category_exclusion_refills_from_faiss(line: ServingIndex) -> None:
    result = line.neighbours(10, "diversity", 2, exclude_categories=[1])
    assert ids(result) == [40, 50]
    assert [c.score for c in result.candidates] == [-9.0, -16.0]
    assert result.filtered_out == 2
    assert not result.exhausted


def test_exhausted_when_fewer_than_k_exist(line: ServingIndex) -> None:
    result = line.neighbours(10, "diversity", 2, exclude_categories=[1, 2])
    assert ids(result) == [60]
    assert result.exhausted
    assert result.filtered_out == 4


def test_item_exclusion_and_trigger_never_returned(line: ServingIndex) -> None:
    assert ids(line.neighbours(10, "diversity", 2, exclude_items=[20, 999])) == [30, 40]
    everything = line.neighbours(30, "diversity", 10)
    assert 30 not in ids(everything)
    assert ids(everything) == [20, 40, 10, 50, 60]  # ties (20/40, 10/50) broken by row order
    assert everything.exhausted


def test_exclusions_combine(line: ServingIndex) -> None:
    result = line.neighbours(40, "diversity", 3, exclude_categories=[1], exclude_items=[50])
    assert ids(result) == [60, 10]  # 60 at distance 4, 10 at 9
    assert result.exhausted and result.filtered_out == 3


def test_map_only_index_is_exhausted_beyond_its_map() -> None:
    topn_ids = np.array([[1, 2], [0, -1], [0, 1]], dtype=np.int32)
    scores = np.array([[0.9, 0.5], [0.9, -np.inf], [0.5, 0.4]], dtype=np.float32)
    cats = {"category": np.array([0, 1, 2], dtype=np.int64)}
    index = ServingIndex.from_topn(ITEMS[:3], cats, {"general": topn_ids}, {"general": scores})
    assert ids(index.neighbours(10, "general", 2)) == [20, 30]
    result = index.neighbours(10, "general", 2, exclude_categories=[1])
    assert ids(result) == [30] and result.exhausted
    assert index.neighbours(20, "general", 5).exhausted
    got, got_scores = index.batch_neighbours(np.array([20, 30]), "general", 3)
    np.testing.assert_array_equal(got, [[10, -1, -1], [10, 20, -1]])
    assert got_scores[1, 0] == pytest.approx(0.5) and np.isneginf(got_scores[0, 1])


def test_from_topn_drops_a_listed_trigger_in_batches() -> None:
    topn_ids = np.array([[0, 1], [1, 0]], dtype=np.int32)
    index = ServingIndex.from_topn(
        ITEMS[:2], {}, {"general": topn_ids}, {"general": np.ones((2, 2), np.float32)}
    )
    got, _ = index.batch_neighbours(np.array([10, 20]), "general", 2)
    np.testing.assert_array_equal(got, [[20, -1], [10, -1]])
    assert ids(index.neighbours(10, "general", 2)) == [20]


def test_map_rows_with_padding_or_the_trigger_inside_the_first_k_are_skipped() -> None:
    # row 0 lists a hole (-1) before its last entry, row 1 lists itself: neither may be answered, with
    # or without exclusions (a lookup without exclusions takes the leading k only when all are answers)
    topn_ids = np.array([[1, -1, 2, 3], [1, 0, 2, 3], [0, 1, 3, -1], [0, 1, 2, -1]], dtype=np.int32)
    scores = np.array([[4, 3, 2, 1]] * 4, dtype=np.float32)
    index = ServingIndex.from_topn(
        ITEMS[:4], {"category": CATS[:4]}, {"general": topn_ids}, {"general": scores}
    )
    assert ids(index.neighbours(10, "general", 2)) == [20, 30]
    assert ids(index.neighbours(20, "general", 2)) == [10, 30]
    whole = index.neighbours(30, "general", 3)
    assert ids(whole) == [10, 20, 40] and whole.scores == [4.0, 3.0, 2.0] and whole.filtered_out == 0
    assert ids(index.neighbours(30, "general", 2, exclude_categories=[0])) == [20, 40]


def test_batch_neighbours_map_and_search_paths(line: ServingIndex) -> None:
    got, scores = line.batch_neighbours(np.array([10, 999, 60]), "diversity", 2)
    np.testing.assert_array_equal(got, [[20, 30], [-1, -1], [50, 40]])
    np.testing.assert_allclose(scores[[0, 2]], [[-1, -4], [-1, -4]])
    assert np.isneginf(scores[1]).all()
    # k beyond the map: FAISS search, trigger still excluded, padded past the catalogue
    got, scores = line.batch_neighbours(np.array([10, 60]), "diversity", 6)
    np.testing.assert_array_equal(got, [[20, 30, 40, 50, 60, -1], [50, 40, 30, 20, 10, -1]])
    np.testing.assert_allclose(scores[0, :5], [-1, -4, -9, -16, -25])


def test_inner_product_matches_numpy_brute_force() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(120, 6)).astype(np.float32)
    items = rng.permutation(10_000)[:120].astype(np.int64)
    index = ServingIndex.from_vectors(items, {}, {"general": x}, {"general": "ip"}, topn=10)
    sims = x @ x.T
    np.fill_diagonal(sims, -np.inf)
    truth = np.argsort(-sims, axis=1, kind="stable")[:, :10]
    got, scores = index.batch_neighbours(items, "general", 10)
    np.testing.assert_array_equal(got, items[truth])
    np.testing.assert_allclose(scores, np.take_along_axis(sims, truth, axis=1), rtol=1e-5)


def test_lookup_errors(line: ServingIndex) -> None:
    with pytest.raises(UnknownItem, match="item 999"):
        line.neighbours(999, "diversity", 2)
    with pytest.raises(UnknownMode, match="available: \\['diversity'\\]"):
        line.neighbours(10, "general", 2)
    with pytest.raises(UnknownView, match="brand"):
        line.neighbours(10, "diversity", 2, exclude_categories=[1], category_view="brand")
    with pytest.raises(ValueError, match="k:"):
        line.neighbours(10, "diversity", 0)
    assert line.has_item(20) and not line.has_item(21) and not line.has_item("x")  # type: ignore[arg-type]
    assert line.attributes_of(30) == {"category": 1}
    with pytest.raises(UnknownItem):
        line.attributes_of(31)
    assert line.attribute_of(30, "category") == 1 and line.attribute_of(60, "category") == 3
    assert line.attribute_of(30, "brand") == -1
    with pytest.raises(UnknownItem):
        line.attribute_of(31, "category")


def test_closed_index_is_not_ready(line: ServingIndex) -> None:
    line.close()
    with pytest.raises(IndexNotReady):
        line.neighbours(10, "diversity", 1)


def test_from_vectors_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="NaN"):
        ServingIndex.from_vectors(
            ITEMS, {}, {"general": np.full((6, 2), np.nan, np.float32)}, {"general": "ip"}
        )
    with pytest.raises(ValueError, match="shape"):
        ServingIndex.from_vectors(ITEMS, {}, {"general": np.ones((5, 2), np.float32)}, {"general": "ip"})
    with pytest.raises(ValueError, match="metrics"):
        ServingIndex.from_vectors(ITEMS, {}, {"general": LINE}, {"general": "cos"})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="valid"):
        ServingIndex.from_vectors(ITEMS, {}, {"general": LINE}, {"general": "ip"}, index_type="annoy")


def test_many_excluded_categories_take_the_isin_path_with_the_same_answer(line: ServingIndex) -> None:
    from index.serving import SMALL_EXCLUSION

    # categories 1 and 2 excluded, padded with absent ids past the per-category-compare threshold
    many = [1, 2, *range(1000, 1000 + SMALL_EXCLUSION)]
    assert len(many) > SMALL_EXCLUSION
    result = line.neighbours(10, "diversity", 2, exclude_categories=many)
    assert ids(result) == [60] and result.exhausted and result.filtered_out == 4


def test_drop_own_group_moves_the_other_groups_up_and_pads() -> None:
    ids_ = np.array([[1, 2, 3, 4], [0, 2, -1, -1], [4, 3, 1, 0]])
    scores = np.array([[4.0, 3, 2, 1], [4, 3, -np.inf, -np.inf], [4, 3, 2, 1]], dtype=np.float32)
    groups = np.array([7, 7, 8, 8, -1])  # row 2 (group 8) drops 3; row 4's group is unknown
    out_ids, out_scores = drop_own_group(ids_, scores, np.array([0, 1, 2]), groups)
    assert out_ids.tolist() == [[2, 3, 4, -1], [2, -1, -1, -1], [4, 1, 0, -1]]
    assert out_scores.tolist() == [[3, 2, 1, -np.inf], [3, -np.inf, -np.inf, -np.inf], [4, 2, 1, -np.inf]]
    same, _ = drop_own_group(ids_[:1], scores[:1], np.array([4]), groups)  # unknown own group: kept
    assert same.tolist() == ids_[:1].tolist()


def own_category_left_out() -> ServingIndex:
    """Items 1..5 at x = 0, 1, 3, 6, 10, categories 0, 0, 1, 1, 2; a top-3 L2 map built without each
    item's own category, as ``index.build`` writes the diversity map. From item 1 the ranking is 2 (own
    category), 3, 4, 5, so its map row is [3, 4, padding]."""
    x = np.array([[0.0], [1], [3], [6], [10]], dtype=np.float32)
    cats = np.array([0, 0, 1, 1, 2])
    index = ServingIndex.from_vectors(
        np.arange(1, 6), {"category": cats}, {"diversity": x}, {"diversity": "l2"}, topn=3
    )
    mode = index._mode("diversity")
    mode.topn_ids, mode.topn_scores = drop_own_group(mode.topn_ids, mode.topn_scores, np.arange(5), cats)
    mode.excludes_own = "category"
    return index


def test_a_map_without_the_own_category_answers_its_exclusion_without_search(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    index = own_category_left_out()
    assert index._mode("diversity").topn_ids[0].tolist() == [2, 3, -1]  # rows of items 3, 4

    def no_search(*args: object, **kwargs: object) -> None:
        raise AssertionError("the precomputed map should answer this lookup")

    with monkeypatch.context() as patch:
        patch.setattr(_Mode, "search", no_search)
        for excluded in ([0], []):  # the mode never answers the trigger's category, asked or not
            result = index.neighbours(1, "diversity", 2, exclude_categories=excluded)
            assert ids(result) == [3, 4] and [c.score for c in result.candidates] == [-9.0, -36.0]
            assert result.filtered_out == 0 and not result.exhausted
    # past the map: the refill from FAISS leaves the own category out too
    assert ids(index.neighbours(1, "diversity", 3)) == [3, 4, 5]
    other = index.neighbours(1, "diversity", 3, exclude_categories=[1])
    assert ids(other) == [5] and other.exhausted
    # another category view is not what the map left out: an unknown view is still an error
    with pytest.raises(UnknownView):
        index.neighbours(1, "diversity", 2, exclude_categories=[0], category_view="shop")
