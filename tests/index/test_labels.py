"""``index.labels``: a version built from a dataset with string ids carries the labels of its item and side
views under ``labels/`` (in the manifest's inventory), ``ServingIndex.load`` reads them once, and the
lookups built from them translate both ways."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from core.atomic import atomic_write_json, read_json
from core.id_labels import IdLabels, write_id_labels
from core.layout import DatasetLayout, IndexVersionLayout
from index.build import build_index
from index.errors import InvalidIndexVersion
from index.labels import ViewLabels
from index.serving import ServingIndex
from tests.index.conftest import FAST, clustered, rehash, write_model

N = 30
ITEM_LABELS = ["B07-abc", *(f"B08-{i:03d}" for i in range(1, N))]
CATEGORY_LABELS = ["books", "garden", "music", "toys", "tv"]


def write_dataset(root: Path, items: list[str] = ITEM_LABELS) -> Path:
    layout = DatasetLayout(root)
    write_id_labels(layout.labels("item"), IdLabels(pa.array(items)))
    write_id_labels(layout.labels("category"), IdLabels(pa.array(CATEGORY_LABELS)))
    write_id_labels(layout.labels("user"), IdLabels(pa.array(["u1", "u2"])))
    atomic_write_json(layout.manifest, {"format": "m2grl-dataset"})
    return root


def build(tmp_path: Path, dataset: Path | None, name: str = "v1") -> Path:
    model = write_model(
        tmp_path / f"model-{name}", clustered(N, 6, seed=4), ids=np.arange(N, dtype=np.int64),
        categories=np.arange(N, dtype=np.int64) % 5,
    )  # fmt: skip
    build_index(model, tmp_path / "root", FAST, version=name, progress=False, dataset_dir=dataset)
    return tmp_path / "root" / "versions" / name


def test_view_labels_translate_both_ways() -> None:
    labels = ViewLabels.of(IdLabels(pa.array(["b", "a", "c"])))
    assert len(labels) == 3 and labels.id_of("a") == 1 and labels.id_of("zz") == -1
    assert labels.ids_of(["c", "nope", "b"]) == [2, -1, 0]
    assert labels.names_of([2, -1, 0]) == ["c", None, "b"]
    assert [labels.name_of(i) for i in (0, 3, -1, -7)] == ["b", None, None, None]


def test_a_version_carries_the_labels_of_its_views(tmp_path: Path) -> None:
    version = build(tmp_path, write_dataset(tmp_path / "ds"))
    manifest = read_json(IndexVersionLayout(version).manifest)
    # the item view and the side view with labels; the users' labels are no business of the service
    assert manifest["labels"] == ["category", "item"]
    assert {"labels/category.parquet", "labels/item.parquet"} <= set(manifest["files"])
    assert not (version / "labels" / "user.parquet").exists()
    index = ServingIndex.load(version)
    assert index.labels is not None and index.labels.item is not None
    assert index.labels.item.id_of("B07-abc") == 0 and index.labels.of("shop") is None
    category = index.labels.of("category")
    assert category is not None and category.names_of([3, -1]) == ["toys", None]
    # lookups keep speaking dense ids: the service translates at its edge
    result = index.neighbours(0, "general", 3)
    assert all(0 <= i < N for i in result.item_ids)


def test_a_version_without_labels_has_none(tmp_path: Path) -> None:
    assert ServingIndex.load(build(tmp_path, None)).labels is None


def test_damaged_or_mismatched_labels_are_refused(tmp_path: Path) -> None:
    version = build(tmp_path, write_dataset(tmp_path / "ds"))
    path = IndexVersionLayout(version).labels("item")
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(InvalidIndexVersion, match="labels/item.parquet"):
        ServingIndex.load(version)
    # labels that are readable but do not name every item: refused even with matching checksums
    write_id_labels(path, IdLabels(pa.array(ITEM_LABELS[:10])))
    rehash(version)
    with pytest.raises(InvalidIndexVersion, match="outside the 10 labels of the item view"):
        ServingIndex.load(version)


def test_a_build_whose_labels_do_not_fit_publishes_nothing(tmp_path: Path) -> None:
    dataset = write_dataset(tmp_path / "ds", items=ITEM_LABELS[:5])
    with pytest.raises(InvalidIndexVersion, match="labels of the item view"):
        build(tmp_path, dataset)
    assert not (tmp_path / "root" / "versions" / "v1").exists()
