"""Titles through ``prepare``: MovieLens movies keep theirs in the dataset, Taobao has none."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from core.atomic import read_json
from core.layout import DatasetLayout
from core.titles import read_titles, titles_of
from offline.data.adapters import read_movielens
from offline.data.prepare import prepare_from_source

DATA = Path(__file__).resolve().parents[2] / "data"


def test_movielens_titles_reach_the_dataset(tmp_path: Path) -> None:
    layout = DatasetLayout(prepare_from_source("movielens", DATA / "movielens-small", tmp_path / "ml"))
    titles = read_titles(layout.titles)
    assert titles is not None and titles.num_rows == 9742  # every movie of movies.csv
    assert read_json(layout.manifest)["titles"] == 9742
    # quoted titles with commas survive the CSV reader
    assert titles_of(titles, [1, 11, 2]) == [
        "Toy Story (1995)", "American President, The (1995)", "Jumanji (1995)",
    ]  # fmt: skip


def test_movielens_1m_titles_are_read_from_the_dat_file(tmp_path: Path) -> None:
    (tmp_path / "ratings.dat").write_text("1::10::5::978300760\n1::20::4::978300761\n", encoding="utf-8")
    (tmp_path / "movies.dat").write_text(
        "10::GoldenEye (1995)::Action|Adventure\n20::Café Society (1995)::Drama\n", encoding="utf-8"
    )
    result = read_movielens(tmp_path / "ratings.dat", tmp_path / "movies.dat")
    assert result.titles is not None
    assert result.titles.to_pylist() == [
        {"item_id": 10, "title": "GoldenEye (1995)"}, {"item_id": 20, "title": "Café Society (1995)"},
    ]  # fmt: skip
    assert result.titles.schema.field("item_id").type == pa.int64()


def test_taobao_has_no_titles(tmp_path: Path) -> None:
    gz = DATA / "taobao-sample" / "UserBehavior_head_sample.csv.gz"
    layout = DatasetLayout(prepare_from_source("taobao", gz, tmp_path / "tb"))
    assert not layout.titles.exists() and read_json(layout.manifest)["titles"] is None
