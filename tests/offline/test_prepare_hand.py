"""The ten-event log of prepare_fixtures, counted by hand, through the whole prepare stage."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from core.atomic import read_json
from core.layout import DatasetLayout
from offline.data.engine import jvm_memory
from offline.data.prepare import prepare_dataset
from tests.offline.prepare_fixtures import ten_config, ten_events


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> DatasetLayout:
    out = tmp_path_factory.mktemp("ten") / "dataset"
    prepare_dataset(ten_events(), out, ten_config())
    return DatasetLayout(out)


def test_cleaning_and_sessions(dataset: DatasetLayout) -> None:
    events = pq.read_table(dataset.events)
    assert events.num_rows == 8
    assert events.column("timestamp").to_pylist() == [0, 100, 200, 5000, 5100, 50, 70, 3670]
    assert events.column("session").to_pylist() == [0, 0, 0, 1, 1, 2, 2, 3]
    assert set(events.column("split").to_pylist()) == {"train"}
    manifest = read_json(dataset.manifest)
    assert manifest["dropped"]["short_dwell"] == 1 and manifest["dropped"]["duplicate"] == 1
    assert manifest["counts"]["sessions"] == 4 and manifest["counts"]["events"] == 8


def test_vocab_sorted_by_train_count_then_id(dataset: DatasetLayout) -> None:
    assert np.load(dataset.vocab("item")).tolist() == [10, 11, 12]
    assert np.load(dataset.vocab_counts("item")).tolist() == [4, 2, 2]
    assert np.load(dataset.vocab("category")).tolist() == [1, 2]
    assert np.load(dataset.vocab_counts("category")).tolist() == [6, 2]


def test_item_graph(dataset: DatasetLayout) -> None:
    edges = pq.read_table(dataset.edges("item")).to_pylist()
    assert edges == [
        {"src": 10, "dst": 11, "weight": 3.0, "count": 1},
        {"src": 12, "dst": 10, "weight": 5.0, "count": 2},
    ]
    csr = np.load(dataset.graph("item"))
    assert csr["indptr"].tolist() == [0, 1, 1, 2]
    assert csr["indices"].tolist() == [1, 0] and csr["indices"].dtype == np.int32
    assert csr["weights"].tolist() == [3.0, 5.0] and csr["weights"].dtype == np.float32


def test_category_graph_removes_consecutive_duplicates(dataset: DatasetLayout) -> None:
    edges = pq.read_table(dataset.edges("category")).to_pylist()
    assert edges == [{"src": 2, "dst": 1, "weight": 5.0, "count": 2}]


def test_sequences(dataset: DatasetLayout) -> None:
    item = np.load(dataset.sequences("item"))
    assert item["indptr"].tolist() == [0, 2, 4, 6, 7]
    assert item["tokens"].tolist() == [0, 1, 2, 0, 2, 0, 0] and item["tokens"].dtype == np.int32
    cat = np.load(dataset.sequences("category"))
    assert cat["indptr"].tolist() == [0, 1, 3, 5, 6]
    assert cat["tokens"].tolist() == [0, 1, 0, 1, 0, 0]


def test_links_and_attributes(dataset: DatasetLayout) -> None:
    assert np.load(dataset.attributes("category")).tolist() == [1, 1, 2]
    assert np.load(dataset.link("item", "category")).tolist() == [0, 0, 1]


def test_manifest(dataset: DatasetLayout) -> None:
    m = read_json(dataset.manifest)
    assert m["views"] == ["item", "category"] and m["relations"] == [["item", "category"]]
    assert m["counts"]["edges"] == {"item": 2, "category": 1}
    assert m["counts"]["vocab"] == {"item": 3, "category": 2}
    assert (m["counts"]["users"], m["counts"]["items"], m["counts"]["input_rows"]) == (2, 3, 10)
    assert m["engine"]["name"] == "duckdb" and "duckdb" in m["versions"]
    assert m["config"]["session_gap_s"] == 3600 and m["target"] == "test"
    assert set(m["timings_s"]) >= {"sessions", "vocab_item", "views_wait"}
    assert set(m["background_timings_s"]) == {"view_item", "view_category"}


def test_count_weighting(tmp_path: Path) -> None:
    out = prepare_dataset(ten_events(), tmp_path / "d", ten_config(edge_weighting="count"))
    edges = pq.read_table(DatasetLayout(out).edges("item"))
    assert edges.column("weight").to_pylist() == [1.0, 2.0]


def test_behaviour_filter_changes_sessions(tmp_path: Path) -> None:
    # Only views form sessions: e3 (cart), e5 (buy), e10 (fav) go; user 1 keeps [e1 e2] | [e4].
    out = prepare_dataset(ten_events(), tmp_path / "d", ten_config(behaviors=("view",)))
    layout = DatasetLayout(out)
    assert pq.read_table(layout.events).column("session").to_pylist() == [0, 0, 1, 2, 2]
    assert read_json(layout.manifest)["dropped"]["behaviour_not_kept"] == 3


def test_existing_output_needs_overwrite(tmp_path: Path, dataset: DatasetLayout) -> None:
    out = tmp_path / "d"
    out.mkdir()
    (out / "keep.txt").write_text("old")
    with pytest.raises(FileExistsError):
        prepare_dataset(ten_events(), out, ten_config())
    assert (out / "keep.txt").read_text() == "old"
    prepare_dataset(ten_events(), out, ten_config(), overwrite=True)
    assert not (out / "keep.txt").exists() and DatasetLayout(out).manifest.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


@pytest.mark.parametrize("where", ["view pass", "engine stage"])
def test_a_failure_beside_the_view_passes_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    # The view passes run in a background thread: a failure there must surface from prepare_dataset,
    # and a failure of the main thread must not leave a pass writing into the folder afterwards.
    import offline.data.prepare as prepare

    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError(f"boom in the {where}")

    monkeypatch.setattr(prepare, "sequence_edges" if where == "view pass" else "build_catalogue", boom)
    out = tmp_path / "d"
    with pytest.raises(RuntimeError, match=f"boom in the {where}"):
        prepare_dataset(ten_events(), out, ten_config())
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_engine_memory_limit_reaches_duckdb_and_the_manifest(tmp_path: Path) -> None:
    from offline.data.engine import connect

    engine = connect("duckdb", memory_limit="1GB")
    try:
        # DuckDB reads GB as 10^9 bytes and prints it in binary units: 1e9 / 2^20 = 953.67 MiB.
        assert engine.con.raw_sql("SELECT current_setting('memory_limit')").fetchone()[0] == "953.6 MiB"
    finally:
        engine.close()
    out = prepare_dataset(ten_events(), tmp_path / "d", ten_config(), memory_limit="1GB")
    assert read_json(DatasetLayout(out).manifest)["engine"]["memory_limit"] == "1GB"


@pytest.mark.parametrize("bad", ["lots", "6", "6GiB", "-1GB", "GB"])
def test_malformed_memory_limit_is_refused_before_any_work(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ValueError, match="is not a size like 512MB or 6GB"):
        prepare_dataset(ten_events(), tmp_path / "d", ten_config(), memory_limit=bad)
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize(
    ("size", "jvm"),
    [("4GB", "4096m"), ("1.5gb", "1536m"), ("512MB", "512m"), ("100KB", "100k"), ("1TB", "1048576m")],
)
def test_memory_limit_in_the_jvm_syntax_spark_takes(size: str, jvm: str) -> None:
    # spark.driver.memory goes to -Xmx, which refuses "4GB" (the JVM would not start).
    assert jvm_memory(size) == jvm
