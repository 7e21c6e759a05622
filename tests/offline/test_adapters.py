"""Adapters on the real shared files and on tiny malformed inputs."""

from __future__ import annotations

import csv
import gzip
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from offline.data.adapters import BadRowReport, read_generic, read_movielens, read_taobao
from offline.data.config import BadInputError

SHARED = Path("/work/shared/data")
ML = SHARED / "ml-latest-small"
TAOBAO = SHARED / "taobao-userbehavior-sample" / "UserBehavior_head_sample.csv.gz"
CANONICAL = ["user_id", "item_id", "timestamp", "behavior"]


@pytest.fixture(scope="module")
def taobao() -> object:
    return read_taobao(TAOBAO)


def test_taobao_real_sample(taobao) -> None:  # type: ignore[no-untyped-def]
    table, report = taobao.table, taobao.bad_rows
    assert report.total_rows == 84_287 and table.num_rows == 84_287
    assert table.column_names == [*CANONICAL, "category_id"]
    assert table.schema.field("user_id").type == pa.int64()
    behaviours = Counter(table.column("behavior").to_pylist())
    assert behaviours == {"view": 75_693, "cart": 4_494, "fav": 2_351, "buy": 1_749}
    # One item appears with two categories: reported, rewritten to its most frequent category.
    assert list(report.bad) == ["item with two categories"]
    (example,) = [e for e in report.examples if e["reason"] == "item with two categories"]
    assert "item 2633450" in example["value"]
    with gzip.open(TAOBAO, "rt") as fh:
        lines = fh.read().splitlines()
    rows = [(n + 1, line.split(",")) for n, line in enumerate(lines) if line.split(",")[1] == "2633450"]
    cats = Counter(r[2] for _, r in rows)
    (minority, n_min), (majority, _) = sorted(cats.items(), key=lambda kv: kv[1])
    assert report.bad["item with two categories"] == n_min
    assert example["line"] == next(n for n, r in rows if r[2] == minority)
    items = table.column("item_id").to_numpy()
    assert set(table.column("category_id").to_numpy()[items == 2633450]) == {int(majority)}
    report.check(0.01)


def test_movielens_real_files_drop_low_ratings() -> None:
    result = read_movielens(ML / "ratings.csv", ML / "movies.csv")
    with open(ML / "ratings.csv", newline="") as fh:
        ratings = list(csv.DictReader(fh))
    kept = [r for r in ratings if float(r["rating"]) >= 3.0]
    assert result.table.num_rows == len(kept)
    assert result.filtered == {"rating below 3": len(ratings) - len(kept)}
    assert result.bad_rows.bad == {}
    assert float(np.min(result.table.column("rating").to_numpy())) >= 3.0
    with open(ML / "movies.csv", newline="") as fh:
        genres = {int(r["movieId"]): r["genres"] for r in csv.DictReader(fh)}
    labels = result.labels["category"]
    assert labels.num_rows == len(set(genres.values()))
    label_of = dict(zip(labels.column("id").to_pylist(), labels.column("label").to_pylist(), strict=True))
    # Spot-check the factorisation against movies.csv on every row (vectorised compare of two lists).
    got = [label_of[c] for c in result.table.column("category_id").to_pylist()]
    assert got == [genres[i] for i in result.table.column("item_id").to_pylist()]
    assert set(result.table.column("behavior").to_pylist()) == {"rating"}


def test_generic_csv_counts_bad_rows_with_lines(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_text(
        "uid,iid,ts,kind,cat,dwell\n"
        "1,10,100,view,5,3\n"
        "1,11,200,view,5,abc\n"  # line 3: wrong type (dwell)
        ",12,300,view,5,3\n"  # line 4: missing id
        "2,12,400,buy,5,3\n"
        "2,13,4.5,view,6,3\n"  # line 6: bad timestamp
    )
    mapping = {
        "user_id": "uid",
        "item_id": "iid",
        "timestamp": "ts",
        "behavior": "kind",
        "category_id": "cat",
        "dwell_s": "dwell",
    }
    result = read_generic(path, mapping)
    assert result.table.num_rows == 2
    assert result.bad_rows.total_rows == 5
    assert result.bad_rows.bad == {"wrong type": 1, "missing value": 1, "bad timestamp": 1}
    where = {(e["reason"], e["line"], e["column"], e["value"]) for e in result.bad_rows.examples}
    assert where == {
        ("wrong type", 3, "dwell", "abc"),
        ("missing value", 4, "uid", ""),
        ("bad timestamp", 6, "ts", "4.5"),
    }
    with pytest.raises(BadInputError) as err:
        result.bad_rows.check(0.5)
    message = str(err.value)
    assert message.startswith(
        "3 of 5 input rows are bad (60.00% > allowed 50.00%): bad timestamp: 1; missing value: 1; "
        "wrong type: 1. Examples: "
    )
    assert f"{path} line 6, column 'ts': '4.5' (bad timestamp)" in message
    assert (
        "bad timestamp: column 'ts' was read as unix seconds (auto-detected); accepted: unix seconds"
        in message
    )
    assert "\n" not in message
    result.bad_rows.check(0.6)


def test_generic_parquet_and_missing_mapping(tmp_path: Path) -> None:
    path = tmp_path / "log.parquet"
    pq.write_table(pa.table({"u": [1, 2], "i": [5, 6], "t": [10, 20], "shop": [7, None]}), path)
    result = read_generic(path, {"user_id": "u", "item_id": "i", "timestamp": "t", "shop_id": "shop"})
    assert result.table.column("behavior").to_pylist() == ["view", "view"]
    assert result.table.column("shop_id").to_pylist() == [7, None]
    with pytest.raises(BadInputError, match="must map"):
        read_generic(path, {"user_id": "u"})
    with pytest.raises(BadInputError, match="not found"):
        read_generic(path, {"user_id": "u", "item_id": "nope", "timestamp": "t"})


def test_taobao_unknown_behaviour_and_short_line(tmp_path: Path) -> None:
    path = tmp_path / "tb.csv"
    path.write_text("1,10,5,pv,100\n1,11,5,click,200\n1,12,5\n2,10,5,buy,300\n")
    result = read_taobao(path)
    assert result.table.column("behavior").to_pylist() == ["view", "buy"]
    assert result.bad_rows.bad == {"unknown behaviour": 1, "wrong number of fields": 1}
    assert result.bad_rows.total_rows == 4


def test_report_merge_caps_examples() -> None:
    a = BadRowReport(10, {"wrong type": 1}, [{"reason": "wrong type", "line": 2}])
    b = BadRowReport(5, {"wrong type": 9}, [{"reason": "wrong type", "line": n} for n in range(9)])
    merged = a.merge(b)
    assert merged.total_rows == 15 and merged.bad == {"wrong type": 10}
    assert len(merged.examples) == 5
