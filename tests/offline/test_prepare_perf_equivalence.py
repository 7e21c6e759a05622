"""The one-sort fast path of prepare (``sessionise``) against the reference expression
(``assign_sessions(clean(...))``) on random logs full of duplicates, time ties and session-id changes;
runs cut from the events file against a row-by-row reference; and the numpy shortcuts against their
slow forms."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from core.vocab import lookup
from offline.data import prepare
from offline.data.cleaning import clean, clean_rows
from offline.data.config import PrepareConfig
from offline.data.engine import Engine, connect, parse_size
from offline.data.graphs import behavior_levels, session_runs, weight_levels
from offline.data.prepare import _train_rows, write_sessions
from offline.data.sessions import (
    assign_sessions,
    can_sessionise,
    session_passes,
    sessionise,
    user_ranges,
)
from tests.offline.prepare_fixtures import assign_split

VIEWS = ("item_id", "category_id", "shop_id")


@pytest.fixture(scope="module")
def duck() -> Iterator[Engine]:
    engine = connect("duckdb")
    yield engine
    engine.close()


def random_log(seed: int, n: int = 600, *, app_ids: bool = False, null_categories: bool = False) -> pa.Table:
    """Few users, items and distinct timestamps, so ties in time, repeated items and exact duplicates
    (a quarter of the rows are copies) are common; dwell is sometimes null, and with
    ``null_categories`` a fifth of the categories."""
    rng = np.random.default_rng(seed)
    item = rng.integers(0, 7, n)
    data = {
        "user_id": rng.integers(1, 6, n),
        "item_id": item,
        "timestamp": np.sort(rng.integers(0, 40, n)) * rng.choice([1, 700], n),
        "behavior": rng.choice(["view", "cart", "fav", "buy"], n, p=[0.7, 0.1, 0.1, 0.1]),
        "category_id": item % 3,
        "shop_id": item % 2,
        "dwell_s": np.where(rng.random(n) < 0.3, np.nan, rng.integers(2, 5, n)),
    }
    if app_ids:
        data["session_id"] = rng.integers(0, 3, n)
    table = pa.table(data)
    table = table.set_column(6, "dwell_s", pa.array(data["dwell_s"], pa.float64(), from_pandas=True))
    if null_categories:
        categories = pa.array(data["category_id"], pa.int64(), mask=rng.random(n) < 0.2)
        table = table.set_column(4, "category_id", categories)
    copies = rng.integers(0, n, n // 4)
    return pa.concat_tables([table, table.take(pa.array(copies))])


def _rows(engine: Engine, expr, cols: list[str]) -> list[tuple]:  # type: ignore[no-untyped-def]
    out = engine.to_arrow(expr.select(*cols)).to_pylist()
    # repr: null dwell (None) and numbers do not compare, their reprs do.
    return sorted(tuple((k, repr(r[k])) for k in cols) for r in out)


V3 = ("item", "category", "shop")
CONFIGS = [
    PrepareConfig(views=V3),
    PrepareConfig(views=V3, session_gap_s=1000, session_merge_gap_s=500),
    PrepareConfig(views=V3, session_gap_s=1, session_merge_gap_s=0, split="per_user", test_fraction=0.3),
]


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("cfg", CONFIGS)
@pytest.mark.parametrize("app_ids", [False, True])
def test_sessionise_matches_assign_sessions(
    duck: Engine, seed: int, cfg: PrepareConfig, app_ids: bool
) -> None:
    raw = duck.load(random_log(seed, app_ids=app_ids))
    reference = assign_sessions(clean(raw, cfg), cfg)
    cols = [*reference.columns]
    assert cols[-3:] == ["pos", "user_events", "session"]
    fast = sessionise(clean_rows(raw, cfg), cfg)
    assert fast.columns == tuple(cols)
    assert _rows(duck, fast, cols) == _rows(duck, reference, cols)


@pytest.mark.parametrize("edges", [[2.0], [1.0, 3.0, 3.0, 4.5], [0.0, 9.0]])  # [0.0, 9.0]: an empty range
@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("batch_rows", [7, 1 << 20])  # batches cut ranges; or one batch per range
def test_sessions_written_over_user_ranges_equal_one_sorted_pass(
    duck: Engine,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    edges: list[float],
    fast: bool,
    batch_rows: int,
) -> None:
    gaps = {"session_gap_s": 1000, "session_merge_gap_s": 500, "test_days": 0.1}
    cfg = PrepareConfig(views=V3, **gaps) if fast else PrepareConfig(views=V3, max_session_len=2, **gaps)
    raw = duck.load(random_log(5, app_ids=True))
    rows = clean_rows(raw, cfg) if fast else clean(raw, cfg)
    whole = sessionise(rows, cfg) if fast else assign_sessions(rows, cfg)
    end = 20_000  # the log runs to 27,300 s: the events from 20,000 s on go, the test split is non-empty
    split = assign_split(whole, cfg, end=end)
    expected = duck.to_arrow(split.order_by(["user_id", "pos"]).drop("pos", "user_events"))
    assert 0 < expected.num_rows < duck.to_arrow(whole).num_rows
    assert set(expected.column("split").to_pylist()) == {"train", "test"}
    assert len(user_ranges(rows.user_id, edges)) == len(set(edges)) + 1
    monkeypatch.setattr(prepare, "_WRITE_BATCH_ROWS", batch_rows)
    path = tmp_path / "events.parquet"
    distinct = write_sessions(duck, rows, cfg, edges, fast=fast, end=end, path=path)
    assert distinct == duck.to_arrow(whole).num_rows
    # In file order: the ranges' concatenation is the whole log sorted by user and position.
    assert pq.read_table(path).to_pylist() == expected.to_pylist()


def test_assign_sessions_numbers_on_from_first_session(duck: Engine) -> None:
    cfg = PrepareConfig(views=V3, max_session_len=2)
    events = clean(duck.load(random_log(6)), cfg)
    whole = duck.to_arrow(assign_sessions(events, cfg).order_by(["user_id", "pos"]))
    later = duck.to_arrow(assign_sessions(events, cfg, first_session=7).order_by(["user_id", "pos"]))
    sessions = whole.column("session").to_numpy()
    assert sessions.min() == 0 and sessions.max() > 5  # capped at 2 events: many sessions
    assert (later.column("session").to_numpy() == sessions + 7).all()


def test_user_ranges_cover_every_user_once(duck: Engine) -> None:
    users = duck.load(pa.table({"user_id": np.arange(-3, 12)}))
    ranges = user_ranges(users.user_id, [4.0, -1.5, 4.0, 8.0])
    hits = [
        duck.to_arrow(users.filter(keep).order_by("user_id")).column("user_id").to_pylist()
        for keep in ranges
        if keep is not None
    ]
    assert hits == [[-3, -2], [-1, 0, 1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11]]
    assert user_ranges(users.user_id, []) == [None]


def test_session_passes_fit_the_memory_cap() -> None:
    gib = 2**30
    assert session_passes(10_000_000, None) == 1  # Spark: partitions spill on their own
    assert session_passes(0, gib) == 1
    assert session_passes(3_000_000, gib) == 1
    assert session_passes(3_000_001, gib) == 2
    assert session_passes(95_000_000, 4 * gib) == 8  # 12M rows per pass under 4 GiB
    assert session_passes(95_000_000, parse_size("3.7 GiB")) == 9  # DuckDB's '4GB' (4e9 bytes)


def test_parse_size_reads_duckdb_settings() -> None:
    assert parse_size("3.7 GiB") == int(3.7 * 2**30)
    assert parse_size("512.0 MiB") == 512 * 2**20
    assert parse_size("4GB") == 4_000_000_000 and parse_size("1000 bytes") == 1000
    with pytest.raises(ValueError, match="not a size"):
        parse_size("lots")


def test_session_runs_by_hand() -> None:
    session = np.array([4, 4, 4, 4, 6, 6, 9])
    node = np.array([1, 1, 2, 1, 1, 1, 3])
    level = np.array([0, 2, 1, 0, 0, 1, 2], dtype=np.int8)
    per_session, nodes, levels = session_runs(session, node, level)
    # session 4: runs 1 1 | 2 | 1; session 6: 1 1 (same node as 4's last run, but a new session); 9: 3
    assert per_session.tolist() == [3, 1, 1]
    assert nodes.tolist() == [1, 2, 1, 1, 3]
    assert levels is not None and levels.tolist() == [2, 1, 0, 1, 2]
    assert session_runs(session, node)[2] is None
    empty = session_runs(session[:0], node[:0], level[:0])
    assert [len(a) for a in empty if a is not None] == [0, 0, 0]


def _reference_runs(rows: list[dict], col: str, levels: dict[str, int]) -> tuple[list, list, list]:
    """Row by row: train events with a known value, a new run at a new session or value."""
    per_session: list[int] = []
    nodes: list[int] = []
    run_levels: list[int] = []
    last: tuple | None = None
    for r in rows:
        if r["split"] != "train" or r[col] is None:
            continue
        if last is None or last[0] != r["session"]:
            per_session.append(0)
        if last != (r["session"], r[col]):
            per_session[-1] += 1
            nodes.append(r[col])
            run_levels.append(levels[r["behavior"]])
        else:
            run_levels[-1] = max(run_levels[-1], levels[r["behavior"]])
        last = (r["session"], r[col])
    return per_session, nodes, run_levels


@pytest.mark.parametrize("seed", [3, 4])
# Batches of whole row groups (one, two of 7 rows, the whole file) cut sessions: their tails wait.
@pytest.mark.parametrize(("group_rows", "batch_rows"), [(1, 1), (7, 10), (1 << 20, 1 << 22)])
def test_runs_from_the_events_file_match_rows(
    duck: Engine,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    seed: int,
    group_rows: int,
    batch_rows: int,
) -> None:
    cfg = PrepareConfig(views=V3, session_gap_s=1000, session_merge_gap_s=0, test_days=0.1)
    raw = duck.load(random_log(seed, null_categories=True))
    end = 40 * 700  # test from 19,360 s on: train is a prefix of every user's history
    events = assign_split(assign_sessions(clean(raw, cfg), cfg), cfg, end=end)
    path = tmp_path / "events.parquet"
    write_sessions(duck, clean(raw, cfg), cfg, [], fast=False, end=end, path=path)
    pq.write_table(pq.read_table(path), path, row_group_size=group_rows)
    rows = duck.to_arrow(events.order_by(["user_id", "pos"])).to_pylist()
    level_weights = weight_levels(cfg)
    assert level_weights is not None
    levels = behavior_levels(cfg, level_weights)
    assert sorted(set(levels.values())) == list(range(len(level_weights))) and levels["buy"] > levels["view"]
    monkeypatch.setattr(prepare, "_RUN_BATCH_ROWS", batch_rows)
    for col in VIEWS:
        parts = [session_runs(*batch) for batch in _train_rows(path, col, levels)]
        got = tuple(np.concatenate([p[i] for p in parts]).tolist() for i in range(3))  # type: ignore[misc]
        expected = _reference_runs(rows, col, levels)
        assert got == expected
        assert len(expected[1]) > 50 and 0 < sum(expected[0]) == len(expected[1])
        without = [session_runs(*batch) for batch in _train_rows(path, col, None)]
        assert all(p[2] is None for p in without)
        assert np.concatenate([p[1] for p in without]).tolist() == expected[1]


def test_fast_path_only_without_cap() -> None:
    assert can_sessionise(PrepareConfig())
    assert not can_sessionise(PrepareConfig(max_session_len=50))


def _slow_lookup(ids: np.ndarray, vocab: np.ndarray) -> np.ndarray:
    order = np.argsort(vocab, kind="stable")
    pos = np.minimum(np.searchsorted(vocab[order], ids), len(vocab) - 1)
    return np.where(vocab[order][pos] == ids, order[pos], -1)


@pytest.mark.parametrize("spread", [10, 10**12])  # dense table path, binary-search path
def test_lookup_paths_agree(spread: int) -> None:
    rng = np.random.default_rng(5)
    vocab = rng.choice(spread * 50, 40, replace=False).astype(np.int64) - spread
    ids = np.r_[vocab, rng.integers(-2 * spread, 60 * spread, 500), [vocab.min() - 1, vocab.max() + 1]]
    got = lookup(ids, vocab)
    assert got.dtype == np.int64
    assert np.array_equal(got, _slow_lookup(ids, vocab))
    assert np.array_equal(lookup(ids[:0], vocab), np.zeros(0, dtype=np.int64))
