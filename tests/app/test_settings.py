"""Settings: defaults, environment and config-file sources, and start-up validation naming the field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from app.settings import Settings, pinned_in_config_file


def test_defaults_match_the_issue(tmp_path: Path) -> None:
    s = Settings(index_root=tmp_path)
    assert (s.default_k, s.max_k, s.max_batch) == (50, 500, 256)
    assert (s.user_header, s.variant_header, s.category_view) == ("X-User-Id", "X-Variant", "category")
    assert s.recent_ttl_s == 15 * 24 * 3600
    assert s.recent_store == "memory" and s.admin_token is None and s.reload_poll_s == 5.0
    assert s.variant_names == ["control"] and s.pinned_versions == ()


def test_environment_with_prefix_and_json_nested(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("M2GRL_INDEX_ROOT", str(tmp_path))
    monkeypatch.setenv("M2GRL_MAX_K", "100")
    monkeypatch.setenv(
        "M2GRL_EXPERIMENT",
        json.dumps({"salt": "s", "variants": [{"name": "a", "weight": 1}, {"name": "b", "weight": 3,
                                                                          "strategy": "filter",
                                                                          "index_version": "v2"}]}),
    )  # fmt: skip
    s = Settings()  # type: ignore[call-arg]
    assert s.max_k == 100 and s.index_root == tmp_path
    assert s.variant_names == ["a", "b"]
    assert s.variant("b") is not None and s.variant("b").strategy == "filter"  # type: ignore[union-attr]
    assert s.pinned_versions == ("v2",)


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_config_file_is_read_and_env_wins(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, suffix: str
) -> None:
    data = {"index_root": str(tmp_path), "max_k": 77, "default_k": 7, "recent_store": "redis"}
    path = tmp_path / f"conf{suffix}"
    if suffix == ".json":
        path.write_text(json.dumps(data))
    else:
        path.write_text("".join(f"{k}: {v}\n" for k, v in data.items()))
    monkeypatch.setenv("M2GRL_CONFIG_FILE", str(path))
    monkeypatch.setenv("M2GRL_DEFAULT_K", "9")
    s = Settings()  # type: ignore[call-arg]
    assert (s.max_k, s.default_k, s.recent_store) == (77, 9, "redis")


def test_missing_config_file_fails(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("M2GRL_CONFIG_FILE", str(tmp_path / "nope.yaml"))
    with pytest.raises(ValueError, match="M2GRL_CONFIG_FILE"):
        Settings(index_root=tmp_path)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"default_k": 600}, "default_k"),
        ({"max_k": 0}, "max_k"),
        ({"recent_store": "memcached"}, "recent_store"),
        ({"redis_timeout_s": 0}, "redis_timeout_s"),
        ({"user_header": "X User"}, "user_header"),
        ({"experiment": {"variants": [{"name": "a", "weight": 0}]}}, "weights must sum to a positive"),
        ({"experiment": {"variants": [{"name": "a", "weight": 1}, {"name": "a", "weight": 1}]}}, "unique"),
        ({"experiment": {"variants": [{"name": "a", "weight": -1}]}}, "weight"),
        ({"experiment": {"variants": [{"name": "a", "weight": 1, "strategy": "magic"}]}}, "strategy"),
        ({"experiment": {"variants": []}}, "at least one"),
        ({"unknown_field": 1}, "unknown_field"),
    ],
)
def test_bad_values_fail_naming_the_field(tmp_path: Path, overrides: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Settings(index_root=tmp_path, **overrides)


def test_pinned_versions_of_a_serving_config_file(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        "experiment:\n  variants:\n    - {name: control, weight: 1}\n"
        "    - {name: old, weight: 0, index_version: v1}\n    - {name: older, weight: 0, index_version: v0}\n"
    )
    assert pinned_in_config_file(config) == ("v0", "v1")
    (tmp_path / "empty.json").write_text("{}")
    assert pinned_in_config_file(tmp_path / "empty.json") == ()


def test_a_bad_serving_config_file_is_one_clear_error(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("experiment:\n  variants:\n    - {name: a, weight: 1, index_version: '../x'}\n")
    with pytest.raises(
        ValueError, match=r"config.yaml: experiment.variants.0.index_version: Value error, version"
    ):
        pinned_in_config_file(config)
    config.write_text("- a list\n")
    with pytest.raises(ValueError, match="config.yaml: a settings file must hold a mapping, got list"):
        pinned_in_config_file(config)
