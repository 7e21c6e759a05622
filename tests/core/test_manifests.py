"""The typed index manifest: a round trip, the one-line errors of a bad file, and the fields readers use."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.manifests import INDEX_FORMAT, DatasetManifest, FileEntry, IndexManifest


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
            "manifest field 'modes' missing or malformed",
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
            "manifest field 'files.a.npy.bytes' missing or malformed",
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
