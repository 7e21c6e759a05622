"""Session rules (split, merge with app session ids, cap) and train/test splits, on hand-made logs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from core.atomic import read_json
from core.layout import DatasetLayout
from offline.data.cleaning import clean
from offline.data.config import PrepareConfig
from offline.data.engine import Engine, connect
from offline.data.prepare import prepare_dataset
from offline.data.sessions import assign_sessions
from offline.data.splits import DAY_S, time_cuts
from tests.offline.prepare_fixtures import assign_split, events

H = 3600


@pytest.fixture(scope="module")
def duck() -> Iterator[Engine]:
    engine = connect("duckdb")
    yield engine
    engine.close()


def sessions_of(engine: Engine, table: pa.Table, config: PrepareConfig) -> list[int]:
    out = engine.to_arrow(
        assign_sessions(clean(engine.load(table), config), config).order_by(["user_id", "pos"])
    )
    return out.column("session").to_pylist()


APP_LOG = [(1, 10, 0), (1, 11, 100), (1, 12, 1000), (1, 13, 4000), (1, 14, 8000), (1, 15, 10_000)]
APP_IDS = [1, 1, 2, 2, 2, 3]


def test_split_at_idle_gap_without_app_ids(duck: Engine) -> None:
    # Gaps 100, 900, 3000, 4000, 2000: only the 4000 s gap splits.
    assert sessions_of(duck, events(APP_LOG), PrepareConfig()) == [0, 0, 0, 0, 1, 1]


def test_app_session_ids_split_and_merge(duck: Engine) -> None:
    # 1 -> 2 after 900 s: merged (< 1800); 4000 s idle inside app session 2: split; 2 -> 3 after
    # 2000 s: not merged. Three sessions.
    table = events(APP_LOG, session_id=pa.array(APP_IDS, pa.int64()))
    assert sessions_of(duck, table, PrepareConfig()) == [0, 0, 0, 0, 1, 2]


def test_configurable_gap(duck: Engine) -> None:
    assert sessions_of(duck, events(APP_LOG), PrepareConfig(session_gap_s=950, session_merge_gap_s=0)) == [
        0, 0, 0, 1, 2, 3,
    ]  # fmt: skip


def test_cap_cuts_long_sessions(duck: Engine) -> None:
    log = [(1, 10 + i, i * 60) for i in range(5)] + [(2, 10, 0), (2, 11, 10 * 365 * DAY_S)]
    cfg = PrepareConfig(max_session_len=2, session_gap_s=365 * DAY_S, session_merge_gap_s=0)
    assert sessions_of(duck, events(log), cfg) == [0, 0, 1, 1, 2, 3, 4]


def test_ties_in_time_are_ordered_by_item(duck: Engine) -> None:
    log = [(1, 30, 5), (1, 20, 5), (1, 10, 0)]
    out = duck.to_arrow(
        assign_sessions(clean(duck.load(events(log)), PrepareConfig()), PrepareConfig()).order_by("pos")
    )
    assert out.column("item_id").to_pylist() == [10, 20, 30]
    assert out.column("pos").to_pylist() == [1, 2, 3]


def splits_of(engine: Engine, table: pa.Table, config: PrepareConfig, end: int | None = None) -> list[tuple]:
    sessioned = assign_sessions(clean(engine.load(table), config), config)
    out = engine.to_arrow(assign_split(sessioned, config, end=end).order_by(["user_id", "pos"]))
    return list(
        zip(
            out.column("user_id").to_pylist(),
            out.column("pos").to_pylist(),
            out.column("split").to_pylist(),
            strict=True,
        )
    )


TEN_AND_FOUR = [(1, 100 + i, i * 10) for i in range(10)] + [(2, 200 + i, i * 10) for i in range(4)]


def test_per_user_holdout(duck: Engine) -> None:
    cfg = PrepareConfig(split="per_user", test_fraction=0.2)
    got = splits_of(duck, events(TEN_AND_FOUR), cfg)
    # User 1: floor(10 * 0.2) = 2 test events (the last two); user 2: floor(0.8) = 0.
    assert [p for u, p, s in got if s == "test"] == [9, 10]
    assert all(u == 1 for u, _, s in got if s == "test")
    assert len(got) == 14


def test_per_user_validation_carved_from_train(duck: Engine) -> None:
    cfg = PrepareConfig(split="per_user", test_fraction=0.2, target="valid")
    got = splits_of(duck, events(TEN_AND_FOUR), cfg)
    user1 = [(p, s) for u, p, s in got if u == 1]
    # The two test events are dropped; of the 8 left, floor(1.6) = 1 is the validation ("test") event.
    assert user1 == [(p, "train") for p in range(1, 8)] + [(8, "test")]


def test_global_time_cut(duck: Engine) -> None:
    end = 10 * DAY_S
    log = [
        (1, 10, end - 3 * DAY_S),
        (1, 11, end - 2 * DAY_S + 5),
        (1, 12, end - DAY_S - 1),
        (1, 13, end - DAY_S),
        (2, 14, end - 1),
    ]
    cfg = PrepareConfig(split="global_time", session_gap_s=H, session_merge_gap_s=0)
    assert [s for *_, s in splits_of(duck, events(log), cfg, end)] == [
        "train",
        "train",
        "train",
        "test",
        "test",
    ]
    valid = PrepareConfig(split="global_time", target="valid")
    got = splits_of(duck, events(log), valid, end)
    assert [s for *_, s in got] == ["train", "test", "test"]
    assert time_cuts(end, valid) == (end - 2 * DAY_S, end - DAY_S)
    with pytest.raises(ValueError, match="end of the data period"):
        assign_split(duck.load(events(log)), cfg)


def test_vocab_from_train_only_and_cold_start(tmp_path: Path) -> None:
    end = 10 * DAY_S
    # Item 99 occurs only in the test day: not in the vocabulary, counted as cold-start.
    log = [(1, 10, 0), (1, 11, 60), (1, 10, end - 100), (1, 99, end - 50), (2, 11, 30), (2, 10, 90)]
    cfg = PrepareConfig(time_window=(0, end), split="global_time", test_days=1.0)
    layout = DatasetLayout(prepare_dataset(events(log), tmp_path / "d", cfg))
    assert sorted(np.load(layout.vocab("item")).tolist()) == [10, 11]
    m = read_json(layout.manifest)["counts"]
    assert (m["test_events"], m["train_events"], m["test_users"], m["cold_start_test_items"]) == (2, 4, 1, 1)
    split = pq.read_table(layout.events).column("split").to_pylist()
    assert split.count("test") == 2
