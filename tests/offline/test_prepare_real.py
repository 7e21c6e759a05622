"""prepare on the bundled real samples, parquet-chunk input, and DuckDB vs Spark identity."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from core.atomic import read_json
from core.layout import DatasetLayout
from offline.data.adapters import read_taobao
from offline.data.config import BadInputError, PrepareConfig
from offline.data.engine import connect
from offline.data.prepare import labels_path, prepare_dataset, prepare_from_source, walks_path
from offline.data.presets import preset
from offline.data.synth import SynthConfig, generate
from tests.offline.prepare_fixtures import ten_config, ten_event_chunks, ten_events

DATA = Path(__file__).resolve().parents[2] / "data"
TAOBAO = DATA / "taobao-sample" / "UserBehavior_head_sample.csv.gz"


def test_taobao_preset_on_bundled_sample(tmp_path: Path) -> None:
    layout = DatasetLayout(prepare_from_source("taobao", TAOBAO, tmp_path / "tb"))
    m = read_json(layout.manifest)
    assert m["counts"]["input_rows"] == 84_287 and m["dropped"]["out_of_window"] == 35
    assert m["counts"]["events"] == 84_252
    assert m["bad_rows"]["bad"] == {"item with two categories": 1}
    assert m["inputs"][0]["sha256"] == "6a5554cae0cab2dd24c5ba92947fc125770548274a4550c5ddf5fd343c383b17"
    events = pq.read_table(layout.events)
    test_ts = pc.filter(events.column("timestamp"), pc.equal(events.column("split"), "test")).to_numpy()
    # The last (China-time) day is test: 2017-12-03 00:00 +08:00 onwards.
    assert test_ts.min() >= 1_512_230_400
    train_ts = pc.filter(events.column("timestamp"), pc.equal(events.column("split"), "train")).to_numpy()
    assert train_ts.max() < 1_512_230_400
    # Vocabulary = distinct train items, ordered by count.
    vocab, counts = np.load(layout.vocab("item")), np.load(layout.vocab_counts("item"))
    train_items = pc.filter(events.column("item_id"), pc.equal(events.column("split"), "train")).to_numpy()
    assert set(vocab.tolist()) == set(train_items.tolist()) and counts.sum() == len(train_items)
    assert np.all(np.diff(counts) <= 0)
    test_items = pc.filter(events.column("item_id"), pc.equal(events.column("split"), "test")).to_numpy()
    assert m["counts"]["cold_start_test_items"] == len(set(test_items.tolist()) - set(vocab.tolist()))
    links = np.load(layout.link("item", "category"))
    assert len(links) == len(vocab) and links.min() >= 0


def test_movielens_preset_caps_sessions(tmp_path: Path) -> None:
    layout = DatasetLayout(prepare_from_source("movielens", DATA / "movielens-small", tmp_path / "ml"))
    events = pq.read_table(layout.events, columns=["session", "split", "user_id"])
    sizes = np.bincount(events.column("session").to_numpy())
    assert sizes.max() == 50
    m = read_json(layout.manifest)
    assert m["dropped"]["adapter: rating below 3"] == 19_073 and m["counts"]["events"] == 81_763
    assert labels_path(layout.root, "category").exists()
    seq = np.load(layout.sequences("item"))
    assert np.diff(seq["indptr"]).max() <= 50


def test_parquet_chunk_folder_and_walks(tmp_path: Path) -> None:
    chunks = ten_event_chunks(tmp_path / "chunks")
    cfg = ten_config(walks_per_node=2, walk_length=4)
    a = DatasetLayout(prepare_dataset(chunks, tmp_path / "a", cfg))
    b = DatasetLayout(prepare_dataset(ten_events(), tmp_path / "b", cfg))
    assert pq.read_table(a.events).equals(pq.read_table(b.events))
    assert len(read_json(a.manifest)["inputs"]) == 2
    wa, wb = np.load(walks_path(a.root, "item")), np.load(walks_path(b.root, "item"))
    assert np.array_equal(wa["tokens"], wb["tokens"]) and len(wa["indptr"]) == 1 + 2 * 2


def test_errors(tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match="lack column 'shop_id'"):
        prepare_dataset(ten_events(), tmp_path / "x", ten_config(views=("item", "shop")))
    with pytest.raises(BadInputError, match="no event survives"):
        prepare_dataset(
            ten_events(), tmp_path / "x", ten_config(behaviors=("buy",), time_window=(10**9, 10**9 + 1))
        )
    with pytest.raises(ValueError, match="valid: duckdb, spark"):
        connect("sqlite")
    assert not (tmp_path / "x").exists()


def _normalise(table: pa.Table) -> pa.Table:
    return table.cast(pa.schema([f.with_nullable(True) for f in table.schema]))


@pytest.mark.slow
@pytest.mark.spark
def test_spark_and_duckdb_give_identical_datasets(tmp_path: Path) -> None:
    table = read_taobao(TAOBAO).table
    # A subsample of users keeps the Spark run (about 30 s of start-up alone) short.
    users = np.unique(table.column("user_id").to_numpy())[:80]
    table = table.filter(pc.is_in(table.column("user_id"), value_set=pa.array(users)))
    cfg = preset("taobao")
    duck = DatasetLayout(prepare_dataset(table, tmp_path / "duck", cfg))
    spark = DatasetLayout(prepare_dataset(table, tmp_path / "spark", cfg, engine="spark"))
    assert _normalise(pq.read_table(duck.events)).equals(_normalise(pq.read_table(spark.events)))
    for view in cfg.views:
        assert pq.read_table(duck.edges(view)).equals(pq.read_table(spark.edges(view)))
        for path in (duck.vocab(view), duck.vocab_counts(view)):
            assert np.array_equal(np.load(path), np.load(spark.root / path.relative_to(duck.root)))
        for path in (duck.sequences(view), duck.graph(view)):
            x, y = np.load(path), np.load(spark.root / path.relative_to(duck.root))
            assert all(np.array_equal(x[k], y[k]) for k in x.files)
    assert np.array_equal(np.load(duck.link("item", "category")), np.load(spark.link("item", "category")))
    assert pq.read_table(duck.catalogue).equals(pq.read_table(spark.catalogue))
    dm, sm = read_json(duck.manifest), read_json(spark.manifest)
    assert dm["counts"] == sm["counts"] and sm["engine"]["name"] == "spark"
    shutil.rmtree(tmp_path, ignore_errors=True)


def _dataset_files(root: Path) -> dict[str, bytes]:
    return {
        str(f.relative_to(root)): f.read_bytes()
        for f in sorted(root.rglob("*"))
        if f.is_file() and f.suffix in (".npy", ".npz", ".parquet")
    }


@pytest.mark.parametrize("cap", [None, 5])  # None: the one-sort path; a session cap: assign_sessions
def test_sessions_in_user_ranges_give_the_same_dataset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cap: int | None
) -> None:
    # A log larger than the engine's memory is sessionised one range of users at a time; the files
    # must not tell.
    folder = generate(SynthConfig(events=6_000, chunk_events=2_000), tmp_path / "log", progress=False).output
    config = PrepareConfig(views=("item", "category", "shop"), max_session_len=cap)
    one = DatasetLayout(prepare_dataset(folder, tmp_path / "one", config))
    monkeypatch.setattr("offline.data.prepare.session_passes", lambda rows, memory: 4)
    four = DatasetLayout(prepare_dataset(folder, tmp_path / "four", config))
    files = _dataset_files(one.root)
    assert len(files) > 10 and "events.parquet" in files
    assert files == _dataset_files(four.root)
    assert read_json(one.manifest)["counts"] == read_json(four.manifest)["counts"]


@pytest.mark.slow
@pytest.mark.spark
def test_spark_reads_a_generated_log_beside_its_manifest_under_a_memory_cap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What `m2grl synth` writes: parquet parts (delta-encoded ids, dictionary-encoded behaviour) with a
    # manifest.json and a _truth folder beside them. Spark given the folder read the manifest as
    # parquet, and took the cap in DuckDB's syntax, which the JVM refuses.
    folder = generate(SynthConfig(events=3_000, chunk_events=1_000), tmp_path / "log", progress=False).output
    config = PrepareConfig(views=("item", "category", "shop"))
    duck = prepare_dataset(folder, tmp_path / "duck", config)
    # Spark sessionises in one pass unless told otherwise; three user ranges go through its union path.
    monkeypatch.setattr("offline.data.prepare.session_passes", lambda rows, memory: 3)
    spark = prepare_dataset(folder, tmp_path / "spark", config, engine="spark", memory_limit="1GB")
    assert pq.read_table(DatasetLayout(duck).events).num_rows > 2_000
    assert _normalise(pq.read_table(DatasetLayout(duck).events)).equals(
        _normalise(pq.read_table(DatasetLayout(spark).events))
    )
    assert (
        read_json(DatasetLayout(spark).manifest)["counts"]
        == read_json(DatasetLayout(duck).manifest)["counts"]
    )


def test_spark_loads_a_folder_without_a_java_stack_on_stderr(tmp_path: Path) -> None:
    # In a process of its own: the JVM writes to that process's stderr, as a user's shell sees it.
    folder = generate(SynthConfig(events=3_000, chunk_events=1_000), tmp_path / "log", progress=False).output
    assert len(list(folder.glob("*.parquet"))) == 3 and (folder / "manifest.json").exists()
    script = (
        "import sys; from pathlib import Path; from offline.data.engine import connect; "
        "e = connect('spark'); print(e.load(Path(sys.argv[1])).count().to_pyarrow().as_py()); e.close()"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(folder)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["3000"]  # the three parts, not the manifest
    assert "Exception" not in result.stderr


def test_bad_row_share_fails_the_job(tmp_path: Path) -> None:
    from offline.data.adapters import BadRowReport

    report = BadRowReport(100, {"wrong type": 5}, [])
    with pytest.raises(BadInputError, match="5 of 100"):
        prepare_dataset(ten_events(), tmp_path / "x", PrepareConfig(max_bad_row_share=0.01), bad_rows=report)
