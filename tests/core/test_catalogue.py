"""``core.catalogue``: the dataset's every item with its side attributes, as a file and in memory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from core.catalogue import Catalogue, CatalogueError, read_catalogue, write_catalogue


def tiny() -> Catalogue:
    return Catalogue(
        np.array([2, 5, 9], dtype=np.int64),
        {"category": np.array([1, -1, 1], dtype=np.int64), "shop": np.array([7, 8, -1], dtype=np.int64)},
        pa.array(["Alien", None, "Heat"]),
    )


def test_round_trip_keeps_ids_unknown_values_and_titles(tmp_path: Path) -> None:
    path = tmp_path / "catalogue.parquet"
    assert read_catalogue(path) is None  # a dataset written before catalogues
    assert write_catalogue(path, tiny()) == 3
    table = pq.read_table(path)
    assert table.schema.names == ["item_id", "category_id", "shop_id", "title"]
    assert table.column("category_id").to_pylist() == [1, None, 1]  # unknown is null in the file
    back = read_catalogue(path)
    assert back is not None and back.views == ["category", "shop"]
    assert back.items.tolist() == [2, 5, 9]
    assert back.attributes["category"].tolist() == [1, -1, 1] and back.attributes["shop"].tolist() == [
        7,
        8,
        -1,
    ]
    assert back.titles is not None and back.titles.to_pylist() == ["Alien", None, "Heat"]


def test_without_titles_and_unsorted_table() -> None:
    table = pa.table({"item_id": [9, 2], "category_id": pa.array([3, None], pa.int64())})
    cat = Catalogue.from_table(table)
    assert cat.items.tolist() == [2, 9] and cat.attributes["category"].tolist() == [-1, 3]
    assert cat.titles is None and len(cat) == 2


def test_lookups() -> None:
    cat = tiny()
    assert cat.rows_of([9, 3, 2]).tolist() == [2, -1, 0]
    assert cat.attributes_of("shop", [5, 9, 100]).tolist() == [8, -1, -1]
    with pytest.raises(KeyError, match="no view 'brand'"):
        cat.attributes_of("brand", [2])


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (pa.table({"id": [1]}), "no 'item_id' column"),
        (pa.table({"item_id": pa.array([1, None], pa.int64())}), "1 null item ids"),
        (pa.table({"item_id": [1, 1]}), "must be unique"),
        (pa.table({"item_id": [1], "colour": ["red"]}), "'colour' is neither"),
    ],
)
def test_bad_tables_are_refused(table: pa.Table, message: str) -> None:
    with pytest.raises(CatalogueError, match=message):
        Catalogue.from_table(table)


def test_bad_arrays_are_refused() -> None:
    ids = np.array([1, 2], dtype=np.int64)
    with pytest.raises(CatalogueError, match="unique and ascending"):
        Catalogue(np.array([2, 1], dtype=np.int64), {})
    with pytest.raises(CatalogueError, match="one entry per item"):
        Catalogue(ids, {"category": np.array([1], dtype=np.int64)})
    with pytest.raises(CatalogueError, match="-1 for unknown"):
        Catalogue(ids, {"category": np.array([1, -3], dtype=np.int64)})
    with pytest.raises(CatalogueError, match="titles has 1 entries"):
        Catalogue(ids, {}, pa.array(["x"]))


def test_unreadable_file_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "catalogue.parquet"
    path.write_bytes(b"not parquet")
    with pytest.raises(CatalogueError, match="catalogue.parquet is not a readable Parquet file"):
        read_catalogue(path)
