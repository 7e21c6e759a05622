"""PrepareConfig validation and the named presets."""

from __future__ import annotations

import pytest

from offline.data.config import ConfigError, PrepareConfig
from offline.data.presets import PRESETS, TAOBAO_WINDOW, YEAR_S, preset


def test_defaults_follow_the_paper() -> None:
    cfg = PrepareConfig()
    assert cfg.views == ("item", "category")
    assert (cfg.session_gap_s, cfg.session_merge_gap_s, cfg.min_dwell_s) == (3600, 1800, 2.0)
    assert cfg.behavior_weights["buy"] > cfg.behavior_weights["cart"] > cfg.behavior_weights["fav"]
    assert cfg.column("item") == "item_id" and cfg.column("category") == "category_id"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"views": ()}, "views"),
        ({"views": ("item", "Shop")}, "views[1]"),
        ({"views": ("item", "item")}, "views"),
        ({"split": "random"}, "split"),
        ({"target": "dev"}, "target"),
        ({"test_fraction": 1.0}, "test_fraction"),
        ({"test_days": 0}, "test_days"),
        ({"session_merge_gap_s": 7200}, "session_merge_gap_s"),
        ({"max_session_len": 1}, "max_session_len"),
        ({"behavior_weights": {"view": -1.0}}, "behavior_weights['view']"),
        ({"behaviors": ("view", "click")}, "behavior_weights"),
        ({"time_window": (10, 5)}, "time_window"),
        ({"p": 0.0}, "p"),
        ({"walk_length": True}, "walk_length"),
        ({"max_bad_row_share": 2.0}, "max_bad_row_share"),
    ],
)
def test_bad_values_name_the_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        PrepareConfig(**kwargs)  # type: ignore[arg-type]
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: ") and "\n" not in str(info.value)


def test_unknown_split_lists_valid_values() -> None:
    with pytest.raises(ConfigError, match="'global_time' or 'per_user', got 'random'"):
        PrepareConfig(split="random")  # type: ignore[arg-type]


def test_config_is_frozen_and_weights_immutable() -> None:
    cfg = PrepareConfig(behavior_weights={"view": 1, "fav": 2, "cart": 3, "buy": 4, "rating": 1})
    with pytest.raises(AttributeError):
        cfg.seed = 3  # type: ignore[misc]
    with pytest.raises(TypeError):
        cfg.behavior_weights["view"] = 9  # type: ignore[index]
    assert cfg.to_dict()["behavior_weights"]["cart"] == 3


def test_presets() -> None:
    ml, tb = preset("movielens"), preset("taobao")
    assert (ml.split, ml.session_gap_s, ml.max_session_len) == ("per_user", YEAR_S, 50)
    assert (tb.split, tb.test_days, tb.time_window) == ("global_time", 1.0, TAOBAO_WINDOW)
    assert tb.views == ml.views == ("item", "category")
    assert set(PRESETS) == {"movielens", "taobao", "generic"}
    with pytest.raises(ValueError, match="valid: generic, movielens, taobao"):
        preset("netflix")  # type: ignore[arg-type]


def test_with_session_gap_lowers_the_merge_gap_only_when_above_it() -> None:
    from offline.data.config import PrepareConfig

    base = PrepareConfig(session_gap_s=3_600, session_merge_gap_s=1_800)
    assert (base.with_session_gap(600).session_gap_s, base.with_session_gap(600).session_merge_gap_s) == (
        600,
        600,
    )
    week = base.with_session_gap(7 * 86_400)
    assert (week.session_gap_s, week.session_merge_gap_s) == (7 * 86_400, 1_800)
