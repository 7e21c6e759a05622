"""The typed manifests: round trips, the one-line errors of a bad file, and the fields readers use."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.manifests import (
    INDEX_FORMAT,
    DatasetManifest,
    FileEntry,
    IndexManifest,
    MetricManifest,
    ModelManifest,
)


def _manifest(**changes: object) -> IndexManifest:
    values: dict[str, object] = {
        "format": INDEX_FORMAT,
        "version": "v1",
        "num_items": 3,
        "attribute_views": ["category"],
        "modes": {"general": {"metric": "ip", "topn": 2}},
        "built_at": "2026-12-05T08:00:00+00:00",
        "files": {"items.npy": {"sha256": "ab", "bytes": 24}},
    }
    return IndexManifest(**(values | changes))  # type: ignore[arg-type]


def test_round_trip_keeps_every_field(tmp_path: Path) -> None:
    path = tmp_path / "manifest.json"
    written = _manifest(model_version="abc123", labels=["category"])
    written.write(path)
    read = IndexManifest.read(path)
    assert read == written
    assert read.files["items.npy"] == FileEntry(sha256="ab", bytes=24)
    assert (read.model_version, read.labels, read.in_memory, read.channels) == (
        "abc123",
        ["category"],
        False,
        {},
    )
    assert read.built_at_s() == 1796457600.0  # 2026-12-05 08:00 UTC


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "manifest unreadable"),
        (json.dumps({"format": "other/1"}), "is not an index manifest of format 'm2grl-index/1'"),
        (
            json.dumps(
                {"format": INDEX_FORMAT, "version": "v", "num_items": 1, "attribute_views": [], "modes": {}}
            ),
            "field 'modes'",
        ),
        (
            json.dumps(
                {
                    "format": INDEX_FORMAT,
                    "version": "v",
                    "num_items": 1,
                    "attribute_views": [],
                    "modes": {"g": {}},
                    "files": {"a.npy": {"sha256": "x"}},
                }
            ),
            "field 'files.a.npy.bytes'",
        ),
    ],
)
def test_a_bad_manifest_is_one_line_naming_the_problem(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "manifest.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=message) as info:
        IndexManifest.read(path)
    assert "\n" not in str(info.value)


def test_unknown_keys_are_ignored_and_a_bad_build_time_reads_as_none(tmp_path: Path) -> None:
    path = tmp_path / "manifest.json"
    data = _manifest(built_at="yesterday").model_dump(mode="json") | {"written_by_a_newer_builder": 1}
    path.write_text(json.dumps(data))
    read = IndexManifest.read(path)
    assert read.version == "v1" and read.built_at_s() is None


def test_dataset_manifest_reads_what_stages_need_and_keeps_the_rest(tmp_path: Path) -> None:
    folder = tmp_path / "ds"
    folder.mkdir()
    with pytest.raises(FileNotFoundError, match="is .*ds a prepared dataset folder"):
        DatasetManifest.read(folder)
    DatasetManifest(
        views=["item", "category"], relations=[("item", "category")], target="valid", counts={"events": 10}
    ).write(folder / "manifest.json")
    read = DatasetManifest.read(folder)
    assert (read.item_view, read.relations, read.target, read.name) == (
        "item",
        [("item", "category")],
        "valid",
        None,
    )
    assert read.model_dump()["counts"] == {"events": 10}  # fields no stage reads are kept as written
    (folder / "manifest.json").write_text(json.dumps({"views": []}))
    with pytest.raises(ValueError, match="field 'views' list should have at least 1 item"):
        DatasetManifest.read(folder)


def test_model_manifest_round_trip_and_its_served_exponent(tmp_path: Path) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    with pytest.raises(FileNotFoundError, match="is .*model an M2GRL model folder"):
        ModelManifest.read(folder)
    written = ModelManifest(
        views=["item", "category"], relations=[("item", "category")], config={"norm_exponent": 0.75},
        dataset=str(tmp_path / "ds"), dataset_sha256="ab", training={"epochs": 3},
    )  # fmt: skip
    written.write(folder / "manifest.json")
    read = ModelManifest.read(folder)
    assert read == written and read.kind == "m2grl" and read.format_version == 1
    assert (read.item_view, read.norm_exponent, read.dataset_dir) == ("item", 0.75, tmp_path / "ds")
    assert read.model_extra == {"training": {"epochs": 3}}
    # a model written before the option existed is served raw; one without a dataset names none
    old = ModelManifest(views=["item"])
    assert (old.norm_exponent, old.dataset_dir) == (0.0, None)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            {"views": ["item"], "config": {"norm_exponent": 1.5}},
            r"norm_exponent must be in \[0, 1\], got 1.5",
        ),
        ({"views": ["item"], "config": {"norm_exponent": True}}, "norm_exponent must be in"),
        ({"views": ["item"], "kind": "metric"}, "field 'kind'"),
        ({"views": "item"}, "field 'views'"),
    ],
)
def test_a_bad_model_manifest_is_one_line_naming_the_file(
    tmp_path: Path, content: dict[str, object], message: str
) -> None:
    (tmp_path / "manifest.json").write_text(json.dumps(content))
    with pytest.raises(ValueError, match=message) as info:
        ModelManifest.read(tmp_path)
    assert str(info.value).startswith(str(tmp_path / "manifest.json")) and "\n" not in str(info.value)


def test_metric_manifest_round_trip(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="a diversity metric folder"):
        MetricManifest.read(tmp_path)
    MetricManifest(config={"seed": 1}, inputs_sha256={"a": "1"}, counts={"positive_pairs": 41}).write(
        tmp_path / "manifest.json"
    )
    read = MetricManifest.read(tmp_path)
    assert (read.kind, read.config, read.inputs_sha256) == ("metric", {"seed": 1}, {"a": "1"})
    assert read.model_extra == {"counts": {"positive_pairs": 41}}
