"""``model.cold``: cold items placed from their side views, on catalogues small enough to count by hand."""

from __future__ import annotations

import numpy as np
import pytest

from model.artifact import M2GRLArtifact
from model.cold import (
    COLD_RULES,
    ColdInputs,
    fit_side_ridge,
    group_mean_rule,
    model_inputs,
    place_cold,
    recency_weights,
    unit_rows,
)

# Four warm items, two categories (rows 0, 1 of the category vocabulary).
# Unit vectors: category 0 -> (1, 0), (0, 1); category 1 -> (0, -1), (0.6, 0.8).
WARM = np.array([[3.0, 0.0], [0.0, 2.0], [0.0, -4.0], [3.0, 4.0]], dtype=np.float32)
WARM_CAT = np.array([0, 0, 1, 1])


def inputs(cold_cat: list[int], **extra: object) -> ColdInputs:
    return ColdInputs(WARM, {"category": WARM_CAT}, {"category": np.array(cold_cat)}, **extra)  # type: ignore[arg-type]


def test_group_mean_is_the_mean_unit_vector_of_the_category_then_the_global_mean() -> None:
    # cold items: category 0, category 1, unknown category, a category no warm item has (row 2)
    placed = group_mean_rule(inputs([0, 1, -1, 2]))
    expected = [[0.5, 0.5], [0.3, -0.1], [0.4, 0.2], [0.4, 0.2]]  # global: (1.6, 0.8) / 4
    np.testing.assert_allclose(placed.vectors, expected, atol=1e-7)
    assert placed.vectors.dtype == np.float32
    assert placed.matched.tolist() == [1, 1, 0, 0]


def test_group_mean_falls_back_from_category_and_shop_to_category() -> None:
    shops = np.array([0, 1, 0, 0])  # warm shops: (cat 0, shop 0), (0, 1), (1, 0), (1, 0)
    cold = ColdInputs(
        WARM,
        {"category": WARM_CAT, "shop": shops},
        # (0, 1): item 1 alone; (1, 0): items 2 and 3; (0, 5): shop unseen -> category 0; (-1, 0): global
        {"category": np.array([0, 1, 0, -1]), "shop": np.array([1, 0, 5, 0])},
    )
    placed = group_mean_rule(cold)
    np.testing.assert_allclose(placed.vectors, [[0.0, 1.0], [0.3, -0.1], [0.5, 0.5], [0.4, 0.2]], atol=1e-7)
    assert placed.matched.tolist() == [2, 2, 1, 0]


def test_group_mean_without_side_views_is_the_global_mean() -> None:
    placed = group_mean_rule(ColdInputs(WARM, {}, {}, cold_count=3))
    np.testing.assert_allclose(placed.vectors, [[0.4, 0.2]] * 3, atol=1e-7)  # (1.6, 0.8) / 4
    assert placed.matched.tolist() == [0, 0, 0]
    assert group_mean_rule(ColdInputs(WARM, {}, {})).vectors.shape == (0, 2)  # nothing to place


def test_a_single_view_model_places_every_cold_item_at_the_global_mean() -> None:
    """A model trained on the item view alone has no side view to group by: every cold item still gets
    a row (the mean unit vector of the warm items), one per catalogue item given."""
    model = M2GRLArtifact(
        views=["item"], relations=[], embeddings={"item": WARM}, context={"item": np.zeros_like(WARM)},
        relation_matrices={}, relational={}, vocab={"item": np.array([1, 2, 3, 4])}, attributes={},
        task_weights={},
    )  # fmt: skip
    cold = model_inputs(model, {"category": np.array([0, 1])})
    assert cold.n_cold == 2 and cold.views == []
    np.testing.assert_allclose(group_mean_rule(cold).vectors, [[0.4, 0.2]] * 2, atol=1e-7)
    # a catalogue without side attributes: only the count says how many items there are
    assert group_mean_rule(model_inputs(model, {}, 3)).vectors.shape == (3, 2)
    with pytest.raises(ValueError, match="one entry per cold item"):
        model_inputs(model, {"category": np.array([0, 1])}, 3)


def test_side_ridge_recovers_an_exact_linear_relation() -> None:
    # side embeddings: category rows (0,) and (1,); shop rows (0,) and (2,): x = [cat, shop] over the four
    # (category, shop) pairs; items y = x A + c exactly, so least squares (l2 = 0) finds A and c.
    a = np.array([[1.0, -2.0], [0.5, 3.0]])
    c = np.array([0.25, -1.0])
    side = {"category": np.array([[0.0], [1.0]]), "shop": np.array([[0.0], [2.0]])}
    warm_side = {"category": np.array([0, 0, 1, 1]), "shop": np.array([0, 1, 0, 1])}
    x = np.array([[0.0, 0.0], [0.0, 2.0], [1.0, 0.0], [1.0, 2.0]])
    y = (x @ a + c).astype(np.float32)
    cold = ColdInputs(y, warm_side, {"category": np.array([1, 0]), "shop": np.array([1, -1])}, side)
    ridge = fit_side_ridge(cold, l2=0.0, normalise=False)
    np.testing.assert_allclose(ridge.weights, a, atol=1e-10)
    np.testing.assert_allclose(ridge.y_mean - ridge.x_mean @ ridge.weights, c, atol=1e-10)
    placed = place_cold("side-ridge", cold, l2=0.0, normalise=False)
    # the second cold item has no shop: it is imputed with the warm items' mean shop embedding (1.0)
    np.testing.assert_allclose(placed.vectors, [[1, 2] @ a + c, [0, 1] @ a + c], atol=1e-6)
    assert placed.matched.tolist() == [2, 1]


def test_side_ridge_penalty_shrinks_towards_the_mean_and_normalises_targets() -> None:
    side = {"category": np.array([[1.0], [-1.0]])}
    cold = inputs([0, 1], side_vectors=side)
    exact = place_cold("side-ridge", cold, l2=0.0).vectors
    # one 1-D feature per category: least squares gives each category its mean unit vector
    np.testing.assert_allclose(exact, [[0.5, 0.5], [0.3, -0.1]], atol=1e-6)
    # sum of squared centred features is 4: the slope shrinks by 4 / (4 + l2)
    shrunk = place_cold("side-ridge", cold, l2=4.0).vectors
    mean = unit_rows(WARM).mean(axis=0)
    np.testing.assert_allclose(shrunk, mean + (exact - mean) / 2, atol=1e-6)


def test_errors_name_the_problem() -> None:
    with pytest.raises(
        ValueError, match="unknown cold rule 'knn'; valid: \\['group-mean', 'recent-mean', 'side-ridge'\\]"
    ):
        place_cold("knn", inputs([0]))
    with pytest.raises(ValueError, match="l2 must be"):
        fit_side_ridge(inputs([0], side_vectors={"category": np.ones((2, 1))}), l2=-1.0)
    with pytest.raises(ValueError, match="lacks the views \\['category'\\]"):
        fit_side_ridge(inputs([0]))
    with pytest.raises(ValueError, match="outside its 2 embeddings"):
        place_cold("side-ridge", inputs([5], side_vectors={"category": np.ones((2, 1))}))
    with pytest.raises(ValueError, match="one row per warm item"):
        ColdInputs(WARM, {"category": np.array([0])}, {"category": np.array([0])})
    with pytest.raises(ValueError, match="differ from cold_side"):
        ColdInputs(WARM, {"category": WARM_CAT}, {"shop": np.array([0])})
    with pytest.raises(ValueError, match="recent-mean needs warm_weights"):
        place_cold("recent-mean", inputs([0]))
    with pytest.raises(ValueError, match="one finite positive weight per warm item \\(4\\)"):
        inputs([0], warm_weights=np.array([1.0, 1.0, 0.0, 1.0]))
    with pytest.raises(ValueError, match="decay must be"):
        recency_weights([1, 2], 0.0)
    assert sorted(COLD_RULES) == ["group-mean", "recent-mean", "side-ridge"]


def test_recency_weights_fall_by_e_per_decay_share_of_later_items() -> None:
    # first appearances 0, 90, 100, 90: 3, 1, 0 and 1 of the 4 items arrived later
    weights = recency_weights([0, 90, 100, 90], 0.5)
    np.testing.assert_allclose(weights, np.exp(-np.array([3, 1, 0, 1]) / 4 / 0.5))
    np.testing.assert_allclose(recency_weights([7, 7], 0.1), [1.0, 1.0])  # one instant: all equal
    assert recency_weights([], 1.0).shape == (0,)


def test_recent_mean_weighs_the_group_by_recency() -> None:
    """Category 0 holds (1, 0) with weight 3 and (0, 1) with weight 1: (0.75, 0.25); category 1 (0, -1)
    with weight 1 and (0.6, 0.8) with weight 1: (0.3, -0.1); the global mean (3 + 0 + 0 + 0.6, 0 + 1 - 1
    + 0.8) / 6 for the unknown category. Equal weights give ``group-mean`` exactly."""
    weights = np.array([3.0, 1.0, 1.0, 1.0])
    placed = place_cold("recent-mean", inputs([0, 1, -1], warm_weights=weights))
    np.testing.assert_allclose(placed.vectors, [[0.75, 0.25], [0.3, -0.1], [0.6, 0.8 / 6]], atol=1e-7)
    assert placed.matched.tolist() == [1, 1, 0]
    equal = place_cold("recent-mean", inputs([0, 1, -1, 2], warm_weights=np.full(4, 2.5)))
    np.testing.assert_allclose(equal.vectors, group_mean_rule(inputs([0, 1, -1, 2])).vectors, atol=1e-7)
