"""The dataset's catalogue through ``prepare``: every item of the log and of the source's listing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from core.atomic import read_json
from core.catalogue import read_catalogue
from core.layout import DatasetLayout
from offline.data.catalogue import build_catalogue
from offline.data.config import BadInputError
from offline.data.prepare import prepare_dataset, prepare_from_source
from tests.offline.prepare_fixtures import ten_config, ten_events

DATA = Path(__file__).resolve().parents[2] / "data"


def log_with_unseen_items() -> pa.Table:
    """The ten-event log (train items 10, 11, 12) plus items that never reach the train split: 13 in
    the test period, 14 with a behaviour cleaning drops, 16 after the time window; and a row of item 12
    without a category (its category stays 2)."""
    extra = pa.table(
        {
            "user_id": pa.array([3, 3, 3, 3], pa.int64()),
            "item_id": pa.array([13, 14, 16, 12], pa.int64()),
            "timestamp": pa.array([150_000, 150_100, 300_000, 150_200], pa.int64()),
            "behavior": pa.array(["view", "remove", "view", "view"]),
            "category_id": pa.array([3, 4, 6, None], pa.int64()),
            "dwell_s": pa.array([None] * 4, pa.float64()),
        }
    )
    return pa.concat_tables([ten_events(), extra])


def test_catalogue_holds_every_item_of_the_log_and_the_listing(tmp_path: Path) -> None:
    listing = pa.table(
        {"item_id": pa.array([15, 10], pa.int64()), "category_id": pa.array([5, 9], pa.int64())}
    )
    titles = pa.table({"item_id": pa.array([10, 15], pa.int64()), "title": ["Ten", "Fifteen"]})
    out = prepare_dataset(
        log_with_unseen_items(), tmp_path / "ds", ten_config(), listing=listing, titles=titles
    )
    layout = DatasetLayout(out)
    assert sorted(np.load(layout.vocab("item")).tolist()) == [10, 11, 12]  # train items only
    catalogue = read_catalogue(layout.catalogue)
    assert catalogue is not None
    assert catalogue.items.tolist() == [10, 11, 12, 13, 14, 15, 16]
    # item 10: the listing's category wins over the log's (1); 15 is listed without behaviour
    assert catalogue.attributes["category"].tolist() == [9, 1, 2, 3, 4, 5, 6]
    assert catalogue.titles is not None
    assert catalogue.titles.to_pylist() == ["Ten", None, None, None, None, "Fifteen", None]
    counts = read_json(layout.manifest)["counts"]
    assert counts["catalogue_items"] == 7 and counts["catalogue_items_without_train"] == 4


def test_without_listing_the_log_is_the_catalogue(tmp_path: Path) -> None:
    out = prepare_dataset(log_with_unseen_items(), tmp_path / "ds", ten_config(views=("item",)))
    catalogue = read_catalogue(DatasetLayout(out).catalogue)
    assert catalogue is not None and catalogue.items.tolist() == [10, 11, 12, 13, 14, 16]
    assert catalogue.views == [] and catalogue.titles is None


def test_listing_without_ids_is_refused() -> None:
    with pytest.raises(BadInputError, match="needs a non-null item_id"):
        build_catalogue(np.array([1], dtype=np.int64), {}, listing=pa.table({"id": [1]}))


@pytest.mark.parametrize(
    ("source", "path"),
    [
        ("movielens", DATA / "movielens-small"),
        ("taobao", DATA / "taobao-sample" / "UserBehavior_head_sample.csv.gz"),
    ],
)
def test_bundled_sources(tmp_path: Path, source: str, path: Path) -> None:
    layout = DatasetLayout(prepare_from_source(source, path, tmp_path / source))  # type: ignore[arg-type]
    catalogue = read_catalogue(layout.catalogue)
    assert catalogue is not None
    vocab = np.load(layout.vocab("item"))
    # warm items carry the same category as the link tables
    assert (
        catalogue.attributes_of("category", vocab).tolist() == np.load(layout.attributes("category")).tolist()
    )
    events = pq.read_table(layout.events, columns=["item_id"]).column("item_id")
    assert np.isin(pc.unique(events).to_numpy(), catalogue.items).all()  # test-period items included
    if source == "movielens":
        assert len(catalogue) == 9742  # all of movies.csv, movies rated below 3 or never rated included
        assert catalogue.titles is not None and catalogue.titles.null_count == 0
        assert (catalogue.attributes["category"] >= 0).all()
    else:
        assert catalogue.titles is None and len(catalogue) > len(pc.unique(events))  # out-of-window rows too
