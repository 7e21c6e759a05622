"""Category baselines of the cold protocol, and EGES's cold-start rule, counted by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from offline.baselines.eges import Eges
from offline.baselines.in_category import in_category_map, popularity_in_category, random_in_category
from offline.baselines.learned import table

COUNTS = np.array([5, 3, 9, 0, 0, 1])
CATEGORIES = np.array([1, 2, 1, 1, -1, 2])


def test_popularity_in_category_lists_the_category_then_the_rest() -> None:
    model = popularity_in_category(COUNTS, CATEGORIES, topn=3)
    assert model.topn_ids is not None and model.topn_scores is not None
    assert model.topn_ids.tolist() == [
        [2, 3, 1],  # the rest of category 1 by count (never the trigger itself), then the others
        [5, 2, 0],  # category 2, then the most popular others
        [0, 3, 1],
        [2, 0, 1],
        [2, 0, 1],  # unknown category: the global list
        [1, 2, 0],
    ]
    assert model.topn_scores[0].tolist() == [3.0, 2.0, 1.0]
    # ties (zero counts) by row: row 3 before row 4
    assert in_category_map(np.full(3, -1), np.array([0, 1, 1]), 5).topn_ids.tolist()[0] == [1, 2]  # type: ignore[union-attr]


def test_short_catalogue_pads_and_bad_inputs_are_refused() -> None:
    model = in_category_map(np.array([1, 1]), np.array([0, 1]), topn=5)
    assert model.topn_ids is not None and model.topn_ids.tolist() == [[1], [0]]
    with pytest.raises(ValueError, match="one entry per row"):
        in_category_map(np.array([1, 1]), np.array([0]), topn=5)
    with pytest.raises(ValueError, match="topn must be >= 1"):
        in_category_map(np.array([1]), np.array([0]), topn=0)


def test_random_in_category_is_seeded_and_keeps_the_category_first() -> None:
    a = random_in_category(CATEGORIES, 5, seed=3).topn_ids
    b = random_in_category(CATEGORIES, 5, seed=3).topn_ids
    assert a is not None and b is not None and np.array_equal(a, b)
    assert set(a[0, :2].tolist()) == {2, 3} and a[1, 0] == 5 and 1 not in a[1].tolist()


def test_eges_side_only_is_the_mean_of_the_known_side_vectors() -> None:
    side = {"category": np.array([0, 1, 1]), "shop": np.array([0, -1, 1])}
    eges = Eges(3, side, {"category": 2, "shop": 2}, dim=2)
    with torch.no_grad():
        table(eges.side_tables["category"]).weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [9.0, 9.0]]))
        table(eges.side_tables["shop"]).weight.copy_(torch.tensor([[3.0, 0.0], [0.0, 3.0], [9.0, 9.0]]))
    cold = {"category": np.array([0, 1, -1, -1]), "shop": np.array([1, -1, 0, -1])}
    np.testing.assert_allclose(eges.side_only(cold), [[0.5, 1.5], [0.0, 1.0], [3.0, 0.0], [0.0, 0.0]])
    with pytest.raises(ValueError, match="rows must lie in \\[-1, 2\\)"):
        eges.side_only({"category": np.array([2]), "shop": np.array([0])})
