"""``core.titles``: the catalogue's ``item_id, title`` table."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from core.titles import clean_titles, read_titles, titles_of, write_titles


def test_clean_titles_keeps_the_first_title_of_an_id_and_drops_blanks() -> None:
    table = clean_titles(
        pa.array([5, 3, 5, 7, None, 9], pa.int64()),
        pa.array(["  Heat (1995) ", "Alien", "Heat again", "   ", "No id", None]),
    )
    assert table.to_pylist() == [{"item_id": 5, "title": "Heat (1995)"}, {"item_id": 3, "title": "Alien"}]


def test_write_read_and_look_up(tmp_path: Path) -> None:
    path = tmp_path / "titles.parquet"
    assert read_titles(path) is None  # a catalogue without titles
    assert write_titles(path, pa.table({"title": ["A", "B"], "item_id": [10, 2]})) == 2
    table = read_titles(path)
    assert table is not None and table.schema.names == ["item_id", "title"]
    assert titles_of(table, [2, 11, 10]) == ["B", None, "A"]


def test_write_refuses_repeated_ids_and_missing_titles(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unique"):
        write_titles(tmp_path / "t.parquet", pa.table({"item_id": [1, 1], "title": ["a", "b"]}))
    with pytest.raises(ValueError, match="non-null"):
        write_titles(tmp_path / "t.parquet", pa.table({"item_id": [1, 2], "title": ["a", None]}))
    assert not (tmp_path / "t.parquet").exists()
