"""A/B assignment: stable per user, proportional to weights, forcing restricted to declared names."""

from __future__ import annotations

import numpy as np
import pytest

from app.ab import Assigner, UnknownVariant, user_unit
from app.settings import VariantConfig

VARIANTS = (
    VariantConfig(name="a", weight=1.0),
    VariantConfig(name="b", weight=3.0, strategy="filter"),
    VariantConfig(name="off", weight=0.0),
)


def test_unit_is_stable_and_salted() -> None:
    assert user_unit("s", "42") == user_unit("s", "42")
    assert user_unit("s", "42") != user_unit("t", "42")
    assert 0.0 <= user_unit("s", "42") < 1.0


def test_bounds_are_cumulative_normalised_weights() -> None:
    assigner = Assigner.from_variants("s", VARIANTS)
    assert assigner.bounds == pytest.approx((0.25, 1.0, 1.0))
    assert assigner.pick(0.0).name == "a"
    assert assigner.pick(0.2499).name == "a"
    assert assigner.pick(0.25).name == "b"
    assert assigner.pick(0.999999).name == "b"


def test_split_proportions_and_stickiness_over_many_users() -> None:
    assigner = Assigner.from_variants("exp-1", VARIANTS)
    users = [f"user-{i}" for i in range(20_000)]
    first = [assigner.assign(u).name for u in users]
    again = [assigner.assign(u).name for u in users]
    assert first == again
    names, counts = np.unique(first, return_counts=True)
    share = dict(zip(names.tolist(), (counts / len(users)).tolist(), strict=True))
    assert "off" not in share  # zero weight: reachable only by forcing
    # binomial sd at n=20000, p=0.25 is 0.003: 0.015 is 5 sd
    assert share["a"] == pytest.approx(0.25, abs=0.015)
    assert share["b"] == pytest.approx(0.75, abs=0.015)


def test_forcing_picks_declared_names_only() -> None:
    assigner = Assigner.from_variants("s", VARIANTS)
    assert assigner.assign("42", forced="off").name == "off"
    with pytest.raises(UnknownVariant) as err:
        assigner.assign("42", forced="zzz")
    assert err.value.allowed == ["a", "b", "off"]


def test_zero_total_weight_is_refused() -> None:
    with pytest.raises(ValueError, match="weights"):
        Assigner.from_variants("s", (VariantConfig(name="a", weight=0.0),))
