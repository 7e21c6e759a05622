"""Bring your own data: string and int64 ids, timestamps, file shapes, behaviours, split options.

Every fixture is a few rows written here; expected values are counted by hand.
"""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from cli.main import app
from core.atomic import read_json
from core.id_labels import IdLabels, read_id_labels, write_id_labels
from core.layout import DatasetLayout
from offline.data.adapters import read_generic, read_movielens
from offline.data.config import BadInputError, ConfigError, LogFormat
from offline.data.prepare import drop_summary, prepare_from_source
from offline.data.timeparse import parse_timestamps

runner = CliRunner()
DAY = 86_400
T0 = 1_569_888_000  # 2019-10-01 00:00:00 UTC


def _cli(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args), env={"COLUMNS": "10000"})
    assert "Traceback" not in result.output
    lines = [ln for ln in result.output.splitlines() if " INFO " not in ln]
    return result.exit_code, "\n".join(lines)


# ------------------------------------------------------------------------------------------------- ids


def test_string_ids_map_to_dense_ids_and_back(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_text(
        "who,what,when,cat,shop\n"
        "bob,sku-2,100,9223372036854775807,12345678901234567890\n"
        "alice,10,200,2053013555631882655,7\n"
        "bob,B07X,300,-9223372036854775808,7\n"
        "alice,sku-2,400,9223372036854775807,\n"
    )
    mapping = {
        "user_id": "who",
        "item_id": "what",
        "timestamp": "when",
        "category_id": "cat",
        "shop_id": "shop",
    }
    result = read_generic(path, mapping)
    table = result.table
    assert result.bad_rows.bad == {}
    # categories fit in int64 (both ends): kept as integers, no labels
    assert table.column("category_id").to_pylist() == [
        9_223_372_036_854_775_807,
        2_053_013_555_631_882_655,
        -9_223_372_036_854_775_808,
        9_223_372_036_854_775_807,
    ]
    assert "category" not in result.labels
    # one value above int64 makes the shop column a string column: every value is a label
    assert sorted(result.labels) == ["item", "shop", "user"]
    users = IdLabels.from_table(result.labels["user"])
    items = IdLabels.from_table(result.labels["item"])
    shops = IdLabels.from_table(result.labels["shop"])
    assert users.labels.to_pylist() == ["alice", "bob"]  # dense ids in sorted label order
    assert items.labels.to_pylist() == ["10", "B07X", "sku-2"]
    assert table.column("user_id").to_pylist() == [1, 0, 1, 0]
    assert items.to_labels(table.column("item_id").to_numpy()) == ["sku-2", "10", "B07X", "sku-2"]
    assert shops.to_labels(table.column("shop_id").fill_null(-1).to_numpy()) == [
        "12345678901234567890",
        "7",
        "7",
        None,
    ]
    assert items.to_ids(["B07X", "nope", "10"]).tolist() == [1, -1, 0]
    assert any("item_id 'what': 3 string ids" in note for note in result.notes)


def test_id_labels_round_trip_through_a_file(tmp_path: Path) -> None:
    labels = IdLabels(pa.array(["a", "é", "z z"]))
    write_id_labels(tmp_path / "labels" / "item.parquet", labels)
    back = read_id_labels(tmp_path / "labels" / "item.parquet")
    assert back is not None and back.labels.equals(labels.labels)
    assert back.to_labels(back.to_ids(["z z", "a", "é"])) == ["z z", "a", "é"]
    assert back.to_labels([3, -1]) == [None, None]
    assert read_id_labels(tmp_path / "labels" / "shop.parquet") is None
    with pytest.raises(ValueError, match="distinct"):
        IdLabels(pa.array(["a", "a"]))
    with pytest.raises(ValueError, match="0..n-1"):
        IdLabels.from_table(pa.table({"id": pa.array([0, 2], pa.int64()), "label": ["a", "b"]}))


def test_the_dataset_keeps_one_mapping_per_view(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    rows = ["user,item,ts,brand"]
    # two users, items A..D, brand of an item = its letter in lower case; one event a day
    for k in range(12):
        user, item = ("u1", "u2")[k % 2], "ABCD"[k % 4]
        rows.append(f"{user},{item},{T0 + k * DAY},{item.lower()}")
    path.write_text("\n".join(rows) + "\n")
    out = tmp_path / "ds"
    code, output = _cli(
        "prepare", "--source", "generic", "--input", str(path), "--output", str(out),
        "--column", "user_id=user,item_id=item,timestamp=ts,brand_id=brand", "--views", "item,brand",
    )  # fmt: skip
    assert code == 0, output
    layout = DatasetLayout(out)
    items, brands, users = (read_id_labels(layout.labels(v)) for v in ("item", "brand", "user"))
    assert items is not None and brands is not None and users is not None
    assert items.labels.to_pylist() == ["A", "B", "C", "D"] and users.labels.to_pylist() == ["u1", "u2"]
    events = pq.read_table(layout.events)
    got = list(
        zip(
            users.to_labels(events.column("user_id").to_numpy()),
            items.to_labels(events.column("item_id").to_numpy()),
            brands.to_labels(events.column("brand_id").to_numpy()),
            events.column("timestamp").to_pylist(),
            strict=True,
        )
    )
    want = [(("u1", "u2")[k % 2], "ABCD"[k % 4], "abcd"[k % 4], T0 + k * DAY) for k in range(12)]
    assert sorted(got, key=lambda r: r[3]) == want
    # the attribute table speaks dense ids too: each item's brand is its own letter
    vocab = items.to_labels(np.load(layout.vocab("item")))
    assert [str(b).upper() for b in brands.to_labels(np.load(layout.attributes("brand")))] == vocab
    assert read_json(layout.manifest)["labels"] == ["brand", "item", "user"]


# ------------------------------------------------------------------------------------------ timestamps


@pytest.mark.parametrize(
    ("values", "fmt", "tz", "expected", "kind"),
    [
        (["2019-10-01 00:00:00 UTC", "2019-10-01T02:00:00+02:00", "2019-10-01"], "auto", "UTC", [T0] * 3, "iso"),
        (["2019-10-01T00:00:00.9Z", "2019-10-01 00:00:00-0130", "2019-10-01T00:00"], "iso", "UTC",
         [T0, T0 + 5400, T0], "iso"),
        (["2019-10-01 02:00:00", "2019-10-01 00:00:00 UTC"], "auto", "Europe/Paris", [T0, T0], "iso"),
        # 02:30 does not exist in Paris on 2019-03-31: the first valid instant, 01:00 UTC
        (["2019-03-31 02:30:00"], "iso", "Europe/Paris", [1_553_994_000], "iso"),
        (["2019-02-30", "2019-13-01", "yesterday"], "iso", "UTC", [None, None, None], "iso"),
        ([str(T0 * 1000), str(T0 * 1000 + 999)], "auto", "UTC", [T0, T0], "unix_ms"),
        ([str(T0), "100"], "auto", "UTC", [T0, 100], "unix_s"),
        (["01/10/2019 02:00"], "%d/%m/%Y %H:%M", "Europe/Paris", [T0], "%d/%m/%Y %H:%M"),
        (["2019-10-01 02:00 +0200"], "%Y-%m-%d %H:%M %z", "Asia/Tokyo", [T0], "%Y-%m-%d %H:%M %z"),
    ],
)  # fmt: skip
def test_timestamps(values: list[str], fmt: str, tz: str, expected: list[int | None], kind: str) -> None:
    seconds, used = parse_timestamps(pa.array(values), fmt, tz)
    assert seconds.to_pylist() == expected and used == kind


def test_a_bad_timestamp_names_row_column_value_and_formats(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_text("u,i,t\n1,2,2019-10-01 00:00:00\n1,3,01.10.2019\n")
    code, output = _cli(
        "prepare", "--source", "generic", "--input", str(path), "--output", str(tmp_path / "ds"),
        "--column", "user_id=u,item_id=i,timestamp=t", "--views", "item",
    )  # fmt: skip
    assert code == 2 and not (tmp_path / "ds").exists()
    (line,) = output.splitlines()
    assert line == (
        f"error: 1 of 2 input rows are bad (50.00% > allowed 1.00%): bad timestamp: 1. Examples: {path} line 3, "
        "column 't': '01.10.2019' (bad timestamp). bad timestamp: column 't' was read as ISO-8601 date-times "
        "(times without a zone in UTC) (auto-detected); accepted: unix seconds or milliseconds (integers), "
        "ISO-8601 dates/times ('2019-10-01', '2019-10-01 00:00:00', '2019-10-01T00:00:00.5+02:00', "
        "'2019-10-01 00:00:00 UTC'), or --time-format with a strptime pattern such as '%d/%m/%Y %H:%M'"
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"delimiter": "::"}, "delimiter: expected one character (or tab), got '::'"),
        ({"encoding": "klingon"}, "encoding: unknown encoding 'klingon'"),
        ({"time_format": "dd.mm.yyyy"}, "time_format: unknown time format 'dd.mm.yyyy'"),
        ({"timezone": "Mars/Base"}, "timezone: unknown time zone 'Mars/Base'"),
    ],
)
def test_log_format_errors_name_the_field(kwargs: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        LogFormat(**kwargs)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------- file shapes


def test_semicolon_latin1_gzip_with_header(tmp_path: Path) -> None:
    path = tmp_path / "log.csv.gz"
    text = "client;article;zeit\nJosé;Café;2019-10-01 00:00:00\nJosé;Thé;2019-10-02 00:00:00\n"
    path.write_bytes(gzip.compress(text.encode("latin-1")))
    mapping = {"user_id": "client", "item_id": "article", "timestamp": "zeit"}
    with pytest.raises(BadInputError, match=r"not UTF-8 text: byte 0xe9 on line 2 .*--encoding latin-1"):
        read_generic(path, mapping)
    result = read_generic(path, mapping, log_format=LogFormat(encoding="latin-1"))
    assert IdLabels.from_table(result.labels["item"]).to_labels(result.table.column("item_id")) == [
        "Café",
        "Thé",
    ]
    assert result.labels["user"].column("label").to_pylist() == ["José"]
    assert result.table.column("timestamp").to_pylist() == [T0, T0 + DAY]
    assert result.notes[0] == "CSV, delimiter ';', a header row, iso8859-1"


def test_zstd_tab_file_without_header_mapped_by_position(tmp_path: Path) -> None:
    path = tmp_path / "u.data.zst"
    with pa.CompressedOutputStream(str(path), "zstd") as fh:
        fh.write(b"196\t242\t3\t881250949\n186\t302\t3\t891717742\n")
    result = read_generic(path, {"user_id": 1, "item_id": "2", "timestamp": "4", "rating": 3})
    assert result.table.column("user_id").to_pylist() == [196, 186]
    assert result.table.column("timestamp").to_pylist() == [881_250_949, 891_717_742]
    assert result.table.column("rating").to_pylist() == [3.0, 3.0]
    assert result.notes[:2] == [
        "CSV, delimiter 'tab', no header row, utf-8",
        "timestamp field 4: unix seconds",
    ]
    with pytest.raises(BadInputError, match="field 9 does not exist .*4 fields, from 1"):
        read_generic(path, {"user_id": 1, "item_id": 9, "timestamp": 4})
    with pytest.raises(BadInputError, match="'uid' not found .*no header row: map columns by position"):
        read_generic(path, {"user_id": "uid", "item_id": 2, "timestamp": 4})


def test_header_by_position_is_detected_and_can_be_forced(tmp_path: Path) -> None:
    path = tmp_path / "log.tsv"
    path.write_text("user\titem\tts\n1\t2\t100\n1\t3\t200\n")
    auto = read_generic(path, {"user_id": 1, "item_id": 2, "timestamp": 3})
    assert auto.table.num_rows == 2 and auto.bad_rows.total_rows == 2
    forced = read_generic(
        path, {"user_id": 1, "item_id": 2, "timestamp": 3}, log_format=LogFormat(header=False)
    )
    assert forced.bad_rows.bad == {"bad timestamp": 1}  # the header line is read as data


def test_parquet_with_string_ids_and_iso_times(tmp_path: Path) -> None:
    path = tmp_path / "log.parquet"
    pq.write_table(
        pa.table({"u": ["x", "y"], "i": [5, 6], "t": ["2019-10-01", "2019-10-02T00:00:00Z"]}), path
    )
    result = read_generic(path, {"user_id": "u", "item_id": 2, "timestamp": "t"})
    assert result.table.column("timestamp").to_pylist() == [T0, T0 + DAY]
    assert result.table.column("item_id").to_pylist() == [5, 6] and sorted(result.labels) == ["user"]


def test_movielens_1m_dat_files(tmp_path: Path) -> None:
    (tmp_path / "ratings.dat").write_text(
        "1::10::5::978300760\n1::20::2::978300761\n2::20::4::978300762\n2::30\n"
    )
    movies = "10::Star Wars: Episode IV (1977)::Action|Sci-Fi\n20::Café (1990)::Drama\n"
    (tmp_path / "movies.dat").write_bytes(movies.encode("latin-1"))
    result = read_movielens(tmp_path / "ratings.dat", tmp_path / "movies.dat")
    assert result.bad_rows.bad == {"wrong number of fields": 1}
    assert result.table.column("item_id").to_pylist() == [10, 20]  # the rating of 2 is filtered
    genres = IdLabels.from_table(result.labels["category"])
    assert genres.to_labels(result.table.column("category_id")) == ["Action|Sci-Fi", "Drama"]
    assert result.notes == ["MovieLens 1m format: ratings.dat + movies.dat"]
    code, output = _cli("prepare", "--source", "movielens", "--input", str(tmp_path / "nothing"))
    assert code == 2 and output == f"error: input {tmp_path / 'nothing'} does not exist"
    (tmp_path / "empty").mkdir()
    code, output = _cli("prepare", "--source", "movielens", "--input", str(tmp_path / "empty"))
    assert code == 2 and output == (
        f"error: {tmp_path / 'empty'}: no MovieLens ratings file; expected ratings.csv + movies.csv (latest); "
        "ratings.dat + movies.dat (1m); u.data + u.item (100k)"
    )


def test_movielens_100k_genre_names_from_u_genre(tmp_path: Path) -> None:
    (tmp_path / "u.data").write_text("1\t1\t4\t100\n1\t2\t5\t200\n")
    flags = ["0"] * 3
    (tmp_path / "u.genre").write_text("unknown|0\nNoir|2\nAction|1\n\n")
    (tmp_path / "u.item").write_text(
        "1|A|x||u|" + "|".join(["0", "1", "1"]) + "\n2|B|x||u|" + "|".join(flags) + "\n"
    )
    result = read_movielens(tmp_path / "u.data", tmp_path / "u.item")
    genres = IdLabels.from_table(result.labels["category"])
    # flags are in u.genre index order: column 1 is Action, column 2 Noir
    assert genres.to_labels(result.table.column("category_id")) == ["Action|Noir", ""]


# ------------------------------------------------------------------------------------ behaviours, split


def _shop_log(tmp_path: Path) -> Path:
    path = tmp_path / "shop.csv"
    kinds = ["view", "purchase", "view", "remove_from_cart", "view", "view", "purchase", "wishlist"]
    rows = ["user,item,ts,kind"] + [f"{k % 2},{k % 3},{T0 + k * 3600},{kind}" for k, kind in enumerate(kinds)]
    path.write_text("\n".join(rows) + "\n")
    return path


def test_behaviour_mapping_and_one_summary_line(tmp_path: Path) -> None:
    path = _shop_log(tmp_path)
    base = ["prepare", "--source", "generic", "--input", str(path), "--output", str(tmp_path / "ds")]
    base += ["--column", "user_id=user,item_id=item,timestamp=ts,behavior=kind", "--views", "item"]
    code, output = _cli(*base, "--behavior", "purchase=order")
    assert code == 2 and output == (
        "error: --behavior purchase=order: 'order' is not a kept behaviour (kept: view, cart, fav, buy, rating); "
        "map to one of them, or set behaviors and behavior_weights in --config"
    )
    code, output = _cli(
        *base, "--behavior", "purchase=buy", "--behavior", "wishlist=fav", "--test-days", "0.1"
    )
    assert code == 0, output
    # row k at k hours; remove_from_cart (k = 3) dropped; the test period is the last 0.1 day (2.4 h)
    # before 07:00:01, from 04:36:01: rows 5, 6, 7
    assert output.splitlines()[-2] == (
        "kept 7 of 8 rows (train 4, test 3); dropped 1: behaviour not kept 1 (remove_from_cart)"
    )
    events = pq.read_table(DatasetLayout(tmp_path / "ds").events)
    assert sorted(events.column("behavior").to_pylist()) == [
        "buy",
        "buy",
        "fav",
        "view",
        "view",
        "view",
        "view",
    ]


def test_drop_summary_counts_every_reason() -> None:
    manifest = {
        "counts": {"events": 90, "train_events": 80, "test_events": 10},
        "bad_rows": {"bad": {"bad timestamp": 3, "item with two categories": 2}},
        "dropped": {"missing_id": 0, "behaviour_not_kept": 5, "duplicate": 1, "adapter: rating below 3": 1},
        "behaviour_values_not_kept": {"remove_from_cart": 4, "click": 1},
    }
    assert drop_summary(manifest) == (
        "kept 90 of 100 rows (train 80, test 10); dropped 10: behaviour not kept 5 (click, remove_from_cart), "
        "bad timestamp 3, duplicate 1, rating below 3 1; rewritten 2: item with two categories 2"
    )


def test_split_options_on_the_cli_and_in_a_toml_file(tmp_path: Path) -> None:
    path = _shop_log(tmp_path)
    base = [
        "prepare",
        "--source",
        "generic",
        "--input",
        str(path),
        "--column",
        "user_id=user,item_id=item,timestamp=ts",
    ]
    base += ["--views", "item"]
    code, output = _cli(
        *base, "--output", str(tmp_path / "a"), "--split", "per_user", "--test-fraction", "0.5"
    )
    assert code == 0, output
    m = read_json(DatasetLayout(tmp_path / "a").manifest)
    assert (m["config"]["split"], m["config"]["test_fraction"]) == ("per_user", 0.5)
    assert (m["counts"]["train_events"], m["counts"]["test_events"]) == (4, 4)  # each user: 4 of 4 -> 2 test
    toml = tmp_path / "prepare.toml"
    toml.write_text(
        'split = "per_user"\ntest_fraction = 0.25\nbehaviors = ["view"]\nsession_gap_s = 600\nsession_merge_gap_s = 0\n'
    )
    code, output = _cli(*base, "--output", str(tmp_path / "b"), "--config", str(toml))
    assert code == 0, output
    m = read_json(DatasetLayout(tmp_path / "b").manifest)
    assert (m["config"]["test_fraction"], m["config"]["session_gap_s"], m["config"]["behaviors"]) == (
        0.25,
        600,
        ["view"],
    )
    # the flag beats the file; 8 events of which 2 per user at most: nobody reaches 1 / 0.1 = 10 events
    code, output = _cli(
        *base, "--output", str(tmp_path / "c"), "--config", str(toml), "--test-fraction", "0.1"
    )
    assert code == 2 and not (tmp_path / "c").exists()
    assert output == (
        "error: the test split is empty: the log spans 2019-10-01 00:00:00 to 2019-10-01 07:00:00 UTC (0.292 days); "
        "split=per_user holds out floor(n * test_fraction=0.1) of each user's n events, so a user needs at least "
        "10 events: raise --test-fraction, or use --split global_time --test-days N"
    )
    code, output = _cli(*base, "--output", str(tmp_path / "d"), "--split", "random")
    assert code == 2 and output == "error: split: Input should be 'global_time' or 'per_user', got 'random'"


def test_generic_only_options_are_refused_for_fixed_formats() -> None:
    code, output = _cli("prepare", "--source", "taobao", "--delimiter", ";", "--time-format", "iso")
    assert (
        code == 2
        and output
        == "error: --delimiter, --time-format: only for --source generic (the taobao format is fixed)"
    )


def test_prepare_from_source_refuses_an_empty_train_split(tmp_path: Path) -> None:
    path = _shop_log(tmp_path)
    with pytest.raises(
        BadInputError, match=r"^the train split is empty: the log spans .* lower --test-days below 0.292"
    ):
        prepare_from_source(
            "generic",
            path,
            tmp_path / "ds",
            column_map={"user_id": "user", "item_id": "item", "timestamp": "ts"},
            views=("item",),
        )
    assert not (tmp_path / "ds").exists()
