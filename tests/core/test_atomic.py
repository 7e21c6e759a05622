from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.atomic import atomic_dir, atomic_write_json, read_json, sha256_file


def test_atomic_dir_renames_into_place_on_success(tmp_path: Path) -> None:
    final = tmp_path / "out"
    with atomic_dir(final) as tmp:
        (tmp / "a.txt").write_text("hello")
        assert not final.exists()  # invisible until the block finishes
    assert (final / "a.txt").read_text() == "hello"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_atomic_dir_leaves_nothing_on_failure(tmp_path: Path) -> None:
    final = tmp_path / "out"
    with pytest.raises(RuntimeError, match="boom"), atomic_dir(final) as tmp:
        (tmp / "half.bin").write_bytes(b"x")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_atomic_dir_refuses_then_replaces_existing(tmp_path: Path) -> None:
    final = tmp_path / "out"
    with atomic_dir(final) as tmp:
        (tmp / "v").write_text("1")
    with pytest.raises(FileExistsError), atomic_dir(final):
        pass
    assert (final / "v").read_text() == "1"
    with atomic_dir(final, overwrite=True) as tmp:
        (tmp / "v").write_text("2")
    assert (final / "v").read_text() == "2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_failed_overwrite_keeps_the_old_content(tmp_path: Path) -> None:
    final = tmp_path / "out"
    with atomic_dir(final) as tmp:
        (tmp / "v").write_text("old")
    with pytest.raises(ValueError), atomic_dir(final, overwrite=True) as tmp:
        (tmp / "v").write_text("new")
        raise ValueError("validation failed")
    assert (final / "v").read_text() == "old"


def test_json_round_trip_and_checksum(tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    atomic_write_json(path, {"b": 1, "a": [1, 2]})
    assert read_json(path) == {"a": [1, 2], "b": 1}
    assert json.loads(path.read_text()) == {"a": [1, 2], "b": 1}
    (tmp_path / "x").write_bytes(b"abc")
    # sha256("abc") from FIPS 180-2 appendix B.1
    assert sha256_file(tmp_path / "x") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
