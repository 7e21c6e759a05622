"""Training pairs of the diversity metric job: positives, negatives, config validation."""

from __future__ import annotations

import numpy as np
import pytest

from core.vocab import lookup
from model.config import MetricConfig
from offline.jobs.diversity import (
    dedupe_unordered,
    discovery_pairs,
    epoch_pairs,
    initial_scales,
    sample_negatives,
)

USER = np.array([1, 1, 1, 1, 2, 2])
SESSION = np.array([10, 10, 10, 11, 20, 20])
ROW = np.array([0, 1, 2, 3, 4, -1])
CATEGORY = np.array([5, 5, 6, 7, 5, -1])


def test_discovery_pairs_within_session() -> None:
    # (0,1) same category; (1,2) a discovery; (2,3) crosses sessions; (3,4) crosses users; (4,-1) unknown item
    a, b = discovery_pairs(USER, SESSION, ROW, CATEGORY)
    assert list(zip(a.tolist(), b.tolist(), strict=True)) == [(1, 2)]


def test_discovery_pairs_within_user() -> None:
    a, b = discovery_pairs(USER, USER, ROW, CATEGORY)
    assert list(zip(a.tolist(), b.tolist(), strict=True)) == [(1, 2), (2, 3)]


def test_discovery_pairs_skip_unknown_category_and_short_input() -> None:
    a, b = discovery_pairs(np.array([1, 1]), np.array([1, 1]), np.array([0, 1]), np.array([-1, 3]))
    assert len(a) == len(b) == 0
    a, b = discovery_pairs(np.array([1]), np.array([1]), np.array([0]), np.array([3]))
    assert len(a) == 0
    with pytest.raises(ValueError, match="same length"):
        discovery_pairs(USER, SESSION[:-1], ROW, CATEGORY)


def test_dedupe_unordered() -> None:
    a, b = dedupe_unordered(np.array([1, 2, 3, 1]), np.array([2, 1, 4, 2]))
    assert list(zip(a.tolist(), b.tolist(), strict=True)) == [(1, 2), (3, 4)]


def test_lookup_maps_ids_to_vocabulary_rows() -> None:
    assert lookup(np.array([10, 99, 30, 5]), np.array([30, 10, 20])).tolist() == [1, -1, 0, -1]
    assert lookup(np.array([1, 2]), np.array([], dtype=np.int64)).tolist() == [-1, -1]


# 0..3 category 1, 4..5 category 2, 6 alone in category 3, 7 unknown
ITEM_CATEGORY = np.array([1, 1, 1, 1, 2, 2, 3, -1])


def test_hard_negatives_are_other_items_of_the_same_category() -> None:
    rng = np.random.default_rng(0)
    anchors = np.repeat(np.arange(6), 3000)
    partners = sample_negatives(anchors, ITEM_CATEGORY, hard_fraction=1.0, rng=rng)
    assert np.all(ITEM_CATEGORY[partners] == ITEM_CATEGORY[anchors])
    assert np.all(partners != anchors)
    # uniform over the 3 other members of category 1: each about 1/3 of anchor 0's partners
    counts = np.bincount(partners[anchors == 0], minlength=4)[1:4] / 3000
    np.testing.assert_allclose(counts, 1 / 3, atol=0.04)
    # anchor 4's only other member is 5
    assert set(partners[anchors == 4].tolist()) == {5}


def test_singleton_and_unknown_categories_fall_back_to_uniform() -> None:
    rng = np.random.default_rng(1)
    anchors = np.repeat(np.array([6, 7]), 4000)
    partners = sample_negatives(anchors, ITEM_CATEGORY, hard_fraction=1.0, rng=rng)
    assert len(np.unique(partners)) == len(ITEM_CATEGORY)


def test_hard_fraction_sets_the_share_of_same_category_negatives() -> None:
    rng = np.random.default_rng(2)
    item_category = np.repeat(np.arange(50), 20)  # 50 categories of 20 items
    anchors = rng.integers(0, 1000, size=20000)
    partners = sample_negatives(anchors, item_category, hard_fraction=0.3, rng=rng)
    same = np.mean(item_category[partners] == item_category[anchors])
    # 0.3 hard + 0.7 * 1/50 uniform draws landing in the same category
    assert same == pytest.approx(0.3 + 0.7 / 50, abs=0.015)
    with pytest.raises(ValueError, match="at least 2 items"):
        sample_negatives(np.array([0]), np.array([1]), hard_fraction=0.5, rng=rng)


def test_epoch_pairs_counts_labels_and_determinism() -> None:
    pos_a, pos_b = np.array([0, 1, 4]), np.array([4, 5, 6])
    a, b, y = epoch_pairs(
        pos_a, pos_b, ITEM_CATEGORY, negatives_per_positive=3, hard_fraction=0.5, rng=np.random.default_rng(0)
    )
    assert len(a) == len(b) == len(y) == 3 * 4
    assert y.sum() == 3
    assert sorted(zip(a[y == 1].tolist(), b[y == 1].tolist(), strict=True)) == [(0, 4), (1, 5), (4, 6)]
    # every negative is anchored on an end of some positive
    assert set(a[y == 0].tolist()) <= {0, 1, 4, 5, 6}
    again = epoch_pairs(
        pos_a, pos_b, ITEM_CATEGORY, negatives_per_positive=3, hard_fraction=0.5, rng=np.random.default_rng(0)
    )
    assert all(np.array_equal(x, z) for x, z in zip((a, b, y), again, strict=True))


def test_initial_scales_put_median_random_distance_at_margin() -> None:
    rng = np.random.default_rng(0)
    e_i = rng.normal(size=(500, 8)).astype(np.float32)
    e_ic = rng.random((500, 4)).astype(np.float32)
    s_i, s_ic = initial_scales(e_i, e_ic, margin=2.0, ic_share=0.25, rng=np.random.default_rng(1))
    a, b = rng.integers(0, 500, 20000), rng.integers(0, 500, 20000)
    d_i = (s_i**2) * ((e_i[a] - e_i[b]) ** 2).sum(1)
    d_ic = (s_ic**2) * ((e_ic[a] - e_ic[b]) ** 2).sum(1)
    assert np.median(d_i) == pytest.approx(1.5, rel=0.1)
    assert np.median(d_ic) == pytest.approx(0.5, rel=0.1)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("hard_fraction", 1.5),
        ("margin", 0.0),
        ("negatives_per_positive", 0),
        ("epochs", 0),
        ("init_ic_share", 1.0),
    ],
)
def test_config_errors_name_the_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=f"^{field}: "):
        MetricConfig(**{field: value})  # type: ignore[arg-type]


def test_config_from_a_mapping_lists_valid_fields() -> None:
    assert MetricConfig(**{"margin": 2.0}).margin == 2.0
    with pytest.raises(ValueError, match=r"^margn: unknown field; valid: .*margin"):
        MetricConfig(**{"margn": 2.0})
