"""``index.explorer``: the 2-D map, the explorer files written by ``build_index`` (titles of the indexed
items only, all covered by the manifest's checksums, and the version's labels) and their serve-time
reader."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from core.atomic import atomic_write_json, read_json
from core.id_labels import IdLabels, write_id_labels
from core.layout import DatasetLayout, IndexVersionLayout
from core.manifests import IndexManifest
from core.titles import write_titles
from index.build import build_index
from index.errors import InvalidIndexVersion
from index.explorer import Explorer, catalogue_dataset, project_2d
from index.serving import ServingIndex
from tests.index.conftest import FAST, clustered, write_model

N = 40
IDS = np.arange(N, dtype=np.int64) * 10 + 1  # write_model's ids: 1, 11, 21, ...


def write_dataset(root: Path, *, titles: dict[int, str] | None = None, with_labels: bool = True) -> Path:
    """The parts of a dataset folder the explorer reads: vocabulary counts, titles, category names."""
    layout = DatasetLayout(root)
    layout.vocab("item").parent.mkdir(parents=True, exist_ok=True)
    np.save(layout.vocab("item"), IDS[::-1].copy())
    np.save(layout.vocab_counts("item"), np.arange(N, dtype=np.int64)[::-1].copy() + 5)
    if titles is not None:
        write_titles(layout.titles, pa.table({"item_id": list(titles), "title": list(titles.values())}))
    if with_labels:
        write_id_labels(layout.labels("category"), IdLabels(pa.array([f"genre-{i}" for i in range(5)])))
    atomic_write_json(layout.manifest, {"format": "m2grl-dataset"})
    return root


def build(tmp_path: Path, dataset: Path | None, *, name: str = "v1", via_manifest: bool = False) -> Path:
    manifest = {"version": "m", "views": ["item", "category"]}
    if via_manifest and dataset is not None:
        manifest["dataset"] = str(dataset)
    model = write_model(tmp_path / f"model-{name}", clustered(N, 6, seed=3), manifest=manifest)
    build_index(
        model, tmp_path / "root", FAST, version=name, progress=False,
        dataset_dir=None if via_manifest else dataset,
    )  # fmt: skip
    return tmp_path / "root" / "versions" / name


# ---------------------------------------------------------------------------------------------- map


def test_project_2d_finds_the_spread_axes_with_a_fixed_sign() -> None:
    rng = np.random.default_rng(0)
    # variance 100 along x0, 4 along x1, ~0 along x2: the map is (x0, x1) up to sign
    x = np.column_stack([rng.normal(0, 10, 500), rng.normal(0, 2, 500), rng.normal(0, 0.01, 500)])
    coords, explained = project_2d(x.astype(np.float32))
    assert coords.shape == (500, 2) and coords.dtype == np.float32
    centred = x - x.mean(axis=0)
    assert abs(np.corrcoef(coords[:, 0], centred[:, 0])[0, 1]) > 0.999
    assert abs(np.corrcoef(coords[:, 1], centred[:, 1])[0, 1]) > 0.99
    assert explained[0] > 0.9 and 0.02 < explained[1] < 0.1
    # the same picture for the same vectors, and for the vectors negated (sign fixed by the loadings)
    again, _ = project_2d(x.astype(np.float32))
    flipped, _ = project_2d(-x.astype(np.float32))
    np.testing.assert_array_equal(coords, again)
    np.testing.assert_allclose(np.abs(coords), np.abs(flipped), atol=1e-4)


def test_project_2d_of_one_dimension_has_a_flat_second_axis() -> None:
    coords, explained = project_2d(np.array([[1.0], [2.0], [4.0]], dtype=np.float32))
    np.testing.assert_allclose(coords[:, 1], 0.0)
    np.testing.assert_allclose(np.abs(coords[:, 0]), [4 / 3, 1 / 3, 5 / 3], atol=1e-6)
    assert explained == [1.0, 0.0]
    with pytest.raises(ValueError, match="matrix"):
        project_2d(np.zeros((0, 3), dtype=np.float32))


# ---------------------------------------------------------------------------------------------- build


def test_build_copies_the_titles_of_indexed_items_and_labels(tmp_path: Path) -> None:
    titles = {1: "Alpha", 11: "Beta Gamma", 21: "alphabet soup", 999: "not indexed"}
    dataset = write_dataset(tmp_path / "ds", titles=titles)
    version = build(tmp_path, dataset)
    manifest = read_json(IndexVersionLayout(version).manifest)
    assert manifest["explorer"]["titles"] == 3  # item 999 is not in the model
    assert manifest["labels"] == ["category"]  # the version's own labels (index.labels)
    for rel in ("explorer/map.npy", "explorer/titles.parquet", "explorer/train_counts.npy",
                "labels/category.parquet"):  # fmt: skip
        assert rel in manifest["files"]
    index = ServingIndex.load(version)
    explorer = Explorer.load(version, index.manifest, index.labels)
    assert explorer.has_titles
    assert explorer.titles_of([21, 31, 1, 999]) == ["alphabet soup", None, "Alpha", None]
    # training counts follow the dataset's vocabulary, whatever its order
    assert explorer.cards([1])[0].train_count == 5 and explorer.cards([IDS[-1]])[0].train_count == N + 4  # type: ignore[union-attr]
    card = explorer.cards([11])[0]
    assert card is not None and card.title == "Beta Gamma" and not card.cold
    assert card.attributes["category"] == (1, "genre-1") and card.attributes["shop"] == (1, None)
    coords = np.load(IndexVersionLayout(version).explorer_map)
    assert coords.shape == (N, 2) and (card.x, card.y) == (float(coords[1, 0]), float(coords[1, 1]))


def test_build_finds_the_dataset_through_the_model_manifest(tmp_path: Path) -> None:
    dataset = write_dataset(tmp_path / "ds", titles={1: "Alpha"})
    version = build(tmp_path, dataset, via_manifest=True)
    assert read_json(IndexVersionLayout(version).manifest)["explorer"]["dataset"] == str(dataset.resolve())
    assert catalogue_dataset(tmp_path / "model-v1") == dataset
    assert catalogue_dataset(tmp_path / "model-v1", tmp_path / "missing") is None


def test_without_a_dataset_the_version_has_a_map_and_ids_only(tmp_path: Path) -> None:
    version = build(tmp_path, None)
    spec = read_json(IndexVersionLayout(version).manifest)["explorer"]
    assert spec["titles"] is None and spec["dataset"] is None
    assert read_json(IndexVersionLayout(version).manifest)["labels"] == []
    explorer = Explorer.load(version, IndexManifest.read(IndexVersionLayout(version).manifest))
    assert not explorer.has_titles and explorer.titles_of([1, 11]) == [None, None]
    card = explorer.cards([1])[0]
    assert card is not None and card.train_count == -1 and not card.cold and card.x is not None
    assert explorer.search("11") == [11] and explorer.search("Alpha") == [] and explorer.search("12") == []


# ---------------------------------------------------------------------------------------------- serve


def test_search_matches_ids_then_titles_most_trained_first(tmp_path: Path) -> None:
    titles = {31: "The Alpha Run", 1: "alpha", 11: "Beta", 21: "ALPHABET"}
    version = build(tmp_path, write_dataset(tmp_path / "ds", titles=titles))
    explorer = Explorer.load(version, IndexManifest.read(IndexVersionLayout(version).manifest))
    # rows are the model's order (1, 11, 21, 31...): the one most trained first
    assert explorer.search("  alpha ") == [1, 21, 31]
    assert explorer.search("alpha", limit=2) == [1, 21]
    assert explorer.search("21") == [21]
    assert explorer.search("no such title") == []


def test_map_points_sample_evenly_and_name_categories(tmp_path: Path) -> None:
    version = build(tmp_path, write_dataset(tmp_path / "ds"))
    explorer = Explorer.load(
        version, IndexManifest.read(IndexVersionLayout(version).manifest), ServingIndex.load(version).labels
    )
    full = explorer.map_points(1000, "category")
    assert full["total"] == N and full["ids"] == IDS.tolist() and len(full["x"]) == N
    assert full["category"] == (np.arange(N) % 5).tolist()
    assert full["category_labels"] == {str(i): f"genre-{i}" for i in range(5)}
    some = explorer.map_points(8, "category")
    assert len(some["ids"]) == 8 and some["ids"][0] == 1 and some["ids"][-1] == int(IDS[-1])
    assert explorer.map_points(8, "no-such-view")["category"] == [-1] * 8


def test_a_damaged_explorer_file_is_refused(tmp_path: Path) -> None:
    version = build(tmp_path, write_dataset(tmp_path / "ds", titles={1: "Alpha"}))
    manifest = IndexManifest.read(IndexVersionLayout(version).manifest)
    path = IndexVersionLayout(version).explorer_map
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # same size, different bytes: only the checksum tells
    path.write_bytes(bytes(data))
    with pytest.raises(InvalidIndexVersion, match="explorer/map.npy"):
        Explorer.load(version, manifest)


def test_a_version_built_before_the_explorer_still_loads(tmp_path: Path) -> None:
    version = build(tmp_path, None)
    raw = read_json(IndexVersionLayout(version).manifest)
    del raw["explorer"]  # as a version written before the explorer existed
    atomic_write_json(IndexVersionLayout(version).manifest, raw)
    explorer = Explorer.load(version, IndexManifest.read(IndexVersionLayout(version).manifest))
    assert explorer.coords is None and explorer.map_points(10, "category")["ids"] == []
    card = explorer.cards([11])[0]
    assert card is not None and card.x is None and card.attributes["category"] == (1, None)
