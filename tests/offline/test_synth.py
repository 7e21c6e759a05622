"""The synthetic log generator: config validation, determinism, schema, chunking and planted structure."""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from core.atomic import read_json
from core.config import ConfigError
from offline.data import synth
from offline.data.synth import (
    MAX_GAP_IN_SESSION_S,
    MIN_SESSION_GAP_S,
    TRUTH_ITEMS,
    TRUTH_USERS,
    SynthConfig,
    generate,
    guide_table,
    guided_search,
    place_sessions,
    zipf_ranks,
)

# A 100k-event sample cut into several generation blocks (so cross-block user timelines are exercised)
# and several parquet parts; planted session ids are written so the 1-hour split can be checked.
SAMPLE = SynthConfig(events=100_000, seed=7, session_ids=True, chunk_events=40_000)
SMALL_BLOCK = 30_000


def _events(folder: Path) -> pa.Table:
    parts = sorted(folder.glob("part-*.parquet"))
    return pa.concat_tables(pq.read_table(p) for p in parts)


def _gen(config: SynthConfig, out: Path, block: int = SMALL_BLOCK) -> Path:
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(synth, "BLOCK_EVENTS", block)
        generate(config, out, progress=False)
    return out


@pytest.fixture(scope="module")
def sample_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _gen(SAMPLE, tmp_path_factory.mktemp("synth") / "log")


@pytest.fixture(scope="module")
def sample(sample_dir: Path) -> dict[str, np.ndarray]:
    """The sample as numpy columns, sorted by (user, timestamp) as the session split sees it."""
    out = sample_dir
    table = _events(out)
    cols = {name: table.column(name).to_numpy(zero_copy_only=False) for name in table.column_names}
    order = np.lexsort((cols["timestamp"], cols["user_id"]))
    sorted_cols = {k: v[order] for k, v in cols.items()}
    truth = pq.read_table(out / TRUTH_ITEMS).to_pandas().set_index("item_id")
    sorted_cols["parent"] = truth["parent_category"].loc[sorted_cols["item_id"]].to_numpy()
    sorted_cols["truth_category"] = truth["category_id"].loc[sorted_cols["item_id"]].to_numpy()
    sorted_cols["truth_shop"] = truth["shop_id"].loc[sorted_cols["item_id"]].to_numpy()
    sorted_cols["rank"] = truth["popularity_rank"].loc[sorted_cols["item_id"]].to_numpy()
    return sorted_cols


# ---------------------------------------------------------------------------------------------- config


def test_defaults_are_derived_from_events() -> None:
    c = SynthConfig(events=1_000_000)
    # items = events / 20; categories = items / 200; parents = categories / 10; shops = items / 50.
    assert (c.items, c.categories, c.top_categories, c.shops, c.users) == (50_000, 250, 25, 1_000, 10_000)
    big = SynthConfig(events=100_000_000)
    assert big.items == 2_000_000 and big.categories == 10_000 and big.top_categories == 500
    tiny = SynthConfig(events=1_000)
    assert (tiny.items, tiny.categories, tiny.top_categories, tiny.users) == (100, 10, 2, 10)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"events": 0}, "events"),
        ({"events": 1.5}, "events"),
        ({"items": 5, "categories": 10}, "items"),
        ({"categories": 3, "top_categories": 4}, "categories"),
        ({"shops": 1, "top_categories": 2}, "shops"),
        ({"p_drift": 1.5}, "p_drift"),
        ({"p_cart": 0.01, "p_buy": 0.02}, "p_buy"),
        ({"p_misclick": -0.1}, "p_misclick"),
        ({"zipf_a": 0.0}, "zipf_a"),
        ({"zipf_a": float("nan")}, "zipf_a"),
        ({"session_len_mean": 0.5}, "session_len_mean"),
        ({"interests_per_user": 0}, "interests_per_user"),
        ({"chunk_events": 0}, "chunk_events"),
        ({"seed": -1}, "seed"),
        ({"dwell": "yes"}, "dwell"),
        ({"compression": "rar"}, "compression"),
        ({"days": 0.0}, "days"),
    ],
)
def test_invalid_config_names_the_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        SynthConfig(**kwargs)  # type: ignore[arg-type]
    assert info.value.field == field
    assert field in str(info.value)
    assert isinstance(info.value, ValueError)  # the CLI reports ValueErrors as one clean line


# ------------------------------------------------------------------------------------------ pure parts


def test_zipf_ranks_match_the_bounded_power_law() -> None:
    # P(rank r) = integral of x^-a over [r+1, r+2] / integral over [1, n+1]; for a = 1.1, n = 1000:
    a, n = 1.1, 1000
    u = np.random.default_rng(0).random(1_000_000)
    ranks = zipf_ranks(u, np.full(len(u), n, dtype=np.int64), a)
    assert ranks.min() >= 0 and ranks.max() <= n - 1
    freq = np.bincount(ranks, minlength=n) / len(u)

    def mass(lo: float, hi: float) -> float:
        return (hi ** (1 - a) - lo ** (1 - a)) / (1 - a)

    total = mass(1, n + 1)
    for r in (0, 1, 4, 49):
        expected = mass(r + 1, r + 2) / total
        assert freq[r] == pytest.approx(expected, rel=0.03)
    # a == 1 uses the logarithmic inverse; population of one always gives rank 0.
    one = zipf_ranks(u[:1000], np.full(1000, 3, dtype=np.int64), 1.0)
    assert np.bincount(one, minlength=3)[0] > np.bincount(one, minlength=3)[2]
    assert (zipf_ranks(u[:10], np.ones(10, dtype=np.int64), 1.1) == 0).all()


def test_place_sessions_hand_computed() -> None:
    g = MIN_SESSION_GAP_S
    # Users 0, 1, 0, 2, 2: user 0 is free at 100, user 1 at 200, user 2 at 0.
    user = np.array([0, 1, 0, 2, 2])
    duration = np.array([10, 20, 30, 5, 5])
    wanted = np.array([1_000, 500, 1_005, 100_000, 50_000])
    free = np.array([100, 200, 0], dtype=np.int64)
    start = place_sessions(user, duration, wanted, free)
    # User 0: pushed to 100 + g, then its second session to the end of the first + g.
    # User 1: pushed to 200 + g. User 2: both wanted times are free; order follows wanted.
    assert start.tolist() == [100 + g, 200 + g, 100 + g + 10 + g, 100_000, 50_000]
    assert free.tolist() == [100 + g + 10 + g + 30, 200 + g + 20, 100_005]
    # A wanted time inside the previous session (+ gap) is pushed; later ones are kept if free.
    free = np.array([0], dtype=np.int64)
    start = place_sessions(
        np.zeros(3, dtype=np.int64), np.array([100, 100, 100]), np.array([g, g + 50, 10 * g]), free
    )
    assert start.tolist() == [g, g + 100 + g, 10 * g]


def test_guided_search_is_the_binary_search() -> None:
    # cdf of weights 1, 3, 0, 4 (a zero weight repeats a value): buckets of width 2 over [0, 8).
    cdf = np.array([1.0, 4.0, 4.0, 8.0])
    guide = guide_table(cdf)
    assert guide.tolist() == [0, 1, 3, 3]  # first index whose value exceeds 0, 2, 4, 6
    v = np.array([0.0, 0.99, 1.0, 3.9, 4.0, 4.5, 7.99, 8.0])
    expected = [0, 0, 1, 1, 3, 3, 3, 4]  # side="right": equal values go past; 8.0 is past the end
    assert guided_search(cdf, guide, v).tolist() == expected == np.searchsorted(cdf, v, "right").tolist()
    # Rounding: v sits one ulp below a cumulative value that is also a bucket start, yet its bucket
    # rounds up to that start's, whose guide is already past the answer: the binary search takes over.
    cdf = np.array([0.478507309229432, 0.7975121820490534, 1.435521927688296])
    v = np.array([0.47850730922943197])
    assert guide_table(cdf)[int(v[0] * (3 / cdf[-1]))] == 1  # the start is past the answer, 0
    assert guided_search(cdf, guide_table(cdf), v).tolist() == [0]
    # Skewed weights (long steps inside a bucket) and bucket starts hit exactly, on random draws.
    rng = np.random.default_rng(0)
    for weights in (rng.lognormal(0, 2.0, 5_000), np.r_[1e6, np.ones(999)], np.ones(1)):
        cdf = np.cumsum(weights)
        v = np.r_[rng.random(20_000) * cdf[-1], np.arange(len(cdf)) * (cdf[-1] / len(cdf)), cdf]
        assert np.array_equal(guided_search(cdf, guide_table(cdf), v), np.searchsorted(cdf, v, "right"))


def test_log_spans_the_configured_days(sample: dict[str, np.ndarray]) -> None:
    days = (sample["timestamp"] - SAMPLE.start_ts) / 86_400
    assert days.min() >= 0
    assert np.percentile(days, 99) <= SAMPLE.days * 1.05
    assert np.percentile(days, 50) == pytest.approx(SAMPLE.days / 2, rel=0.1)


# ----------------------------------------------------------------------------------- files and schema


def test_schema_dtypes_manifest_and_truth(sample_dir: Path) -> None:
    parts = sorted(sample_dir.glob("part-*.parquet"))
    assert [p.name for p in parts] == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    schema = pq.read_schema(parts[0])
    expected = {
        "user_id": pa.int64(),
        "item_id": pa.int64(),
        "timestamp": pa.int64(),
        "behavior": pa.string(),
        "category_id": pa.int64(),
        "shop_id": pa.int64(),
        "dwell_s": pa.float64(),
        "session_id": pa.int64(),
    }
    assert {f.name: f.type for f in schema} == expected
    assert [pq.read_metadata(p).num_rows for p in parts] == [40_000, 40_000, 20_000]
    # Integer columns are delta-encoded and behaviour dictionary-encoded, yet DuckDB, like pyarrow,
    # reads plain strings with the same values (no Arrow dictionary type leaks into the files).
    column = pq.read_metadata(parts[0]).row_group(0).column
    assert "DELTA_BINARY_PACKED" in column(1).encodings and "RLE_DICTIONARY" in column(3).encodings
    con = duckdb.connect()
    rows = con.execute(f"SELECT behavior, count(*) FROM '{parts[0]}' GROUP BY ALL ORDER BY ALL").fetchall()
    assert con.execute(f"SELECT typeof(behavior) FROM '{parts[0]}' LIMIT 1").fetchall() == [("VARCHAR",)]
    counts = pq.read_table(parts[0]).column("behavior").value_counts().to_pylist()
    assert rows == sorted((c["values"], c["counts"]) for c in counts)
    assert {r[0] for r in rows} == {"view", "fav", "cart", "buy"}

    manifest = read_json(sample_dir / "manifest.json")
    assert manifest["counts"]["events"] == 100_000
    assert sum(manifest["counts"]["behaviors"].values()) == 100_000
    assert [p["rows"] for p in manifest["parts"]] == [40_000, 40_000, 20_000]
    assert manifest["config"]["items"] == SAMPLE.items
    # No stray temporary folder next to the output (atomic write).
    assert [p.name for p in sample_dir.parent.iterdir()] == ["log"]

    truth = pq.read_table(sample_dir / TRUTH_ITEMS)
    assert truth.num_rows == SAMPLE.items
    assert truth.column_names == ["item_id", "category_id", "parent_category", "shop_id", "popularity_rank"]
    assert len(set(truth.column("item_id").to_pylist())) == SAMPLE.items
    users = pq.read_table(sample_dir / TRUTH_USERS)
    assert users.num_rows == SAMPLE.n_users * SAMPLE.interests_per_user
    # The event folder's *.parquet files are the events only (the truth lives under _truth/).
    assert all(p.name.startswith("part-") for p in sample_dir.glob("*.parquet"))


def test_optional_columns_can_be_left_out(tmp_path: Path) -> None:
    out = _gen(
        SynthConfig(events=2_000, dwell=False, session_ids=False, compression="none"), tmp_path / "log"
    )
    assert pq.read_schema(out / "part-00000.parquet").names == [
        "user_id",
        "item_id",
        "timestamp",
        "behavior",
        "category_id",
        "shop_id",
    ]


def test_same_seed_same_files_other_seed_differs(tmp_path: Path, sample_dir: Path) -> None:
    again = _gen(SAMPLE, tmp_path / "again")
    for part in sorted(sample_dir.glob("part-*.parquet")):
        assert pq.read_table(part).equals(pq.read_table(again / part.name))
    assert pq.read_table(sample_dir / TRUTH_ITEMS).equals(pq.read_table(again / TRUTH_ITEMS))
    other = _gen(SynthConfig(events=100_000, seed=8, session_ids=True, chunk_events=40_000), tmp_path / "o")
    assert not _events(other).equals(_events(sample_dir))


def test_chunk_size_does_not_change_the_content(tmp_path: Path) -> None:
    config = SynthConfig(events=50_000, seed=3, chunk_events=50_000)
    one = _gen(config, tmp_path / "one", block=20_000)
    many = _gen(SynthConfig(events=50_000, seed=3, chunk_events=7_000), tmp_path / "many", block=20_000)
    assert len(list(one.glob("part-*.parquet"))) == 1
    assert len(list(many.glob("part-*.parquet"))) == 8  # ceil(50_000 / 7_000)
    assert _events(one).equals(_events(many))


def test_existing_output_is_refused_and_left_alone(tmp_path: Path) -> None:
    out = _gen(SynthConfig(events=1_000), tmp_path / "log")
    before = sorted(p.name for p in out.iterdir())
    with pytest.raises(FileExistsError):
        generate(SynthConfig(events=1_000, seed=1), out, progress=False)
    assert sorted(p.name for p in out.iterdir()) == before
    generate(SynthConfig(events=500, seed=1), out, progress=False, overwrite=True)
    assert read_json(out / "manifest.json")["counts"]["events"] == 500


# ------------------------------------------------------------------------------------ planted structure


def _in_session_pairs(s: dict[str, np.ndarray]) -> np.ndarray:
    """Boolean per row i > 0: row i - 1 and row i are in the same planted session."""
    return s["session_id"][1:] == s["session_id"][:-1]


def test_one_hour_split_recovers_the_planted_sessions(sample: dict[str, np.ndarray]) -> None:
    same_user = sample["user_id"][1:] == sample["user_id"][:-1]
    gap = np.diff(sample["timestamp"])
    recovered_boundary = ~same_user | (gap > 3600)
    planted_boundary = ~_in_session_pairs(sample)
    assert np.array_equal(recovered_boundary, planted_boundary)
    within = gap[~planted_boundary]
    assert within.min() >= 1 and within.max() <= MAX_GAP_IN_SESSION_S
    assert gap[planted_boundary & same_user].min() >= MIN_SESSION_GAP_S
    # Planted ids are 0..n-1 with none lost, and the recovered count is the same n.
    n = int(sample["session_id"].max()) + 1
    assert len(np.unique(sample["session_id"])) == n == int(recovered_boundary.sum()) + 1


def test_consecutive_events_share_a_category_far_above_chance(sample: dict[str, np.ndarray]) -> None:
    # After the cleaning of section 3.1 (dwell < 2 s dropped: the planted mis-clicks), a step changes
    # category only by drift: same-category rate >= 1 - p_drift - margin, against a chance level of
    # sum_c share_c^2.
    keep = ~(sample["dwell_s"] < 2.0)  # null dwell (non-view events) is kept
    s = {k: v[keep] for k, v in sample.items()}
    pair = _in_session_pairs(s)
    same_cat = (s["category_id"][1:] == s["category_id"][:-1])[pair]
    assert same_cat.mean() >= 1 - SAMPLE.p_drift - 0.03
    share = np.unique(s["category_id"], return_counts=True)[1] / len(s["category_id"])
    assert same_cat.mean() > 5 * float((share**2).sum())
    # Drift is real, not just stickiness: view -> view steps change category about p_drift of the time.
    views = s["behavior"] == "view"
    vv = pair & views[1:] & views[:-1]
    changed = (s["category_id"][1:] != s["category_id"][:-1])[vv]
    assert abs(changed.mean() - SAMPLE.p_drift) < 0.03
    # ... and always to a related category (same parent), as do the shops.
    assert ((s["parent"][1:] == s["parent"][:-1])[pair]).all()


def test_raw_log_has_misclicks_that_break_categories(sample: dict[str, np.ndarray]) -> None:
    views = sample["behavior"] == "view"
    short = sample["dwell_s"][views] < 2.0
    assert abs(short.mean() - SAMPLE.p_misclick) < 0.01
    assert np.isnan(sample["dwell_s"][~views]).all()  # dwell unknown (null) for non-view events
    assert (sample["dwell_s"][views][~short] >= 2.0).all()


def test_items_have_one_category_and_one_shop_consistent_with_truth(sample: dict[str, np.ndarray]) -> None:
    assert np.array_equal(sample["category_id"], sample["truth_category"])
    assert np.array_equal(sample["shop_id"], sample["truth_shop"])


def test_shops_specialise_in_categories_of_one_parent(
    sample_dir: Path, sample: dict[str, np.ndarray]
) -> None:
    truth = pq.read_table(sample_dir / TRUTH_ITEMS).to_pandas()
    per_shop = truth.groupby("shop_id").agg(
        parents=("parent_category", "nunique"), cats=("category_id", "nunique")
    )
    assert (per_shop["parents"] == 1).all()
    assert per_shop["cats"].mean() <= SAMPLE.categories_per_shop
    # Shop co-occurrence follows categories: consecutive distinct shops in a session share a category
    # far more often than two random shops do.
    pair = _in_session_pairs(sample)
    shop_change = pair & (sample["shop_id"][1:] != sample["shop_id"][:-1])
    same_cat = (sample["category_id"][1:] == sample["category_id"][:-1])[shop_change]
    share = np.unique(sample["category_id"], return_counts=True)[1] / len(sample["category_id"])
    assert same_cat.mean() > 0.5 > 5 * float((share**2).sum())


def test_sessions_start_in_one_of_the_users_interests(
    sample_dir: Path, sample: dict[str, np.ndarray]
) -> None:
    interests = pq.read_table(sample_dir / TRUTH_USERS).to_pandas()
    allowed = set(zip(interests["user_id"], interests["category_id"], strict=True))
    first = np.concatenate([[True], ~_in_session_pairs(sample)])
    first &= ~(sample["dwell_s"] < 2.0)  # a session may open with a mis-click
    starts = set(zip(sample["user_id"][first], sample["category_id"][first], strict=True))
    assert starts <= allowed


def test_popular_items_dominate_their_category(sample: dict[str, np.ndarray]) -> None:
    counts = np.bincount(sample["rank"])
    # Bounded power law with a = 1.1: rank 0 vs rank 1 ratio (1 - 2^-0.1) / (2^-0.1 - 3^-0.1) = 1.81 for
    # large categories; small categories truncate the tail, so only the order and the rough ratio hold.
    assert counts[0] > counts[1] > counts[2] > counts[10]
    assert 1.5 < counts[0] / counts[1] < 2.5


def test_funnel_follow_ups_come_right_after_the_view_of_the_same_item(sample: dict[str, np.ndarray]) -> None:
    b, item = sample["behavior"], sample["item_id"]
    order = {"view": 0, "fav": 1, "cart": 2, "buy": 3}
    code = np.vectorize(order.__getitem__)(b)
    pair = _in_session_pairs(sample)
    follow = np.flatnonzero(code[1:] > 0) + 1  # rows that are fav / cart / buy
    assert (follow > 0).all() and pair[follow - 1].all()
    assert (item[follow] == item[follow - 1]).all()
    assert (code[follow - 1] < code[follow]).all()  # view < fav < cart < buy inside a group
    buys = np.flatnonzero(code == 3)
    assert (code[buys - 1] == 2).all()  # a buy always follows a cart of the same item
    n_views = (code == 0).sum()
    rate = (1 - SAMPLE.p_misclick) * n_views
    assert (code == 2).sum() / rate == pytest.approx(SAMPLE.p_cart, rel=0.1)
    assert (code == 3).sum() / rate == pytest.approx(SAMPLE.p_buy, rel=0.15)
    assert (code == 1).sum() / rate == pytest.approx(SAMPLE.p_fav, rel=0.15)


@pytest.mark.slow
def test_prepare_recovers_the_planted_sessions_and_category_graph(tmp_path: Path) -> None:
    """End to end with ``offline.data.prepare`` (DuckDB): sessions found by the 1-hour split are the planted
    ones, and the category graph's edges stay inside the planted category tree."""
    from offline.data.config import PrepareConfig
    from offline.data.prepare import prepare_dataset

    config = SynthConfig(events=20_000, seed=5, session_ids=True)
    out = _gen(config, tmp_path / "log", block=8_000)
    events = _events(out)
    dataset = prepare_dataset(
        events.drop_columns(["session_id"]),
        tmp_path / "dataset",
        PrepareConfig(views=("item", "category", "shop")),
    )
    prepared = pq.read_table(dataset / "events.parquet", columns=["user_id", "timestamp", "session"])
    planted = events.select(["user_id", "timestamp", "session_id"])
    joined = prepared.join(planted, ["user_id", "timestamp"]).to_pandas()
    assert len(joined) == prepared.num_rows  # (user, timestamp) is a key of the planted log
    # A bijection between prepared and planted sessions (mis-click-only sessions vanish in cleaning).
    assert (joined.groupby("session")["session_id"].nunique() == 1).all()
    assert (joined.groupby("session_id")["session"].nunique() == 1).all()

    truth = pq.read_table(out / TRUTH_ITEMS).to_pandas()
    parent = dict(zip(truth["category_id"], truth["parent_category"], strict=False))
    edges = pq.read_table(dataset / "graphs" / "category_edges.parquet").to_pandas()
    assert len(edges) > 0
    assert all(parent[s] == parent[d] for s, d in zip(edges["src"], edges["dst"], strict=True))
