"""Channel mixes: the merge rule by hand-computed cases, exclusions after the merge, exhaustion, and a
built version holding the ``cooc`` channel (written, validated, loaded, refused when broken).

The served example: items 10..60 on a line (x = 0..5), categories 0, 1, 1, 2, 2, 3; the general
mode (L2) keeps a 2-wide map, so deeper m2grl lists come from FAISS: from item 10 the m2grl ranking is
20, 30, 40, 50, 60. The cooc map lists 60 then 40 for item 10, and nothing for the other items.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.atomic import read_json
from core.layout import IndexRoot
from index.build import build_index
from index.channels import RANK_OFFSET, check_mix, merge_ranked, parse_mix, source_lists, source_names
from index.errors import InvalidArtifact, InvalidIndexVersion, UnknownChannel
from index.inputs import ChannelInput
from index.serving import ServingIndex
from tests.index.conftest import FAST, rehash

ITEMS = np.array([10, 20, 30, 40, 50, 60], dtype=np.int64)
CATS = np.array([0, 1, 1, 2, 2, 3], dtype=np.int64)
LINE = np.arange(6, dtype=np.float32)[:, None]
COOC_IDS = np.full((6, 2), -1, dtype=np.int32)
COOC_IDS[0] = [5, 3]  # item 10 -> 60, 40
COOC_SCORES = np.where(COOC_IDS >= 0, 0.5, -np.inf).astype(np.float32)
BOTH = {"m2grl": 1.0, "cooc": 1.0}


@pytest.fixture
def line() -> ServingIndex:
    return ServingIndex.from_vectors(
        ITEMS, {"category": CATS}, {"general": LINE}, {"general": "l2"}, topn=2,
        channel_maps={"cooc": (COOC_IDS, COOC_SCORES)}, default_mix=BOTH,
    )  # fmt: skip


def r(rank: int) -> float:
    return 1.0 / (RANK_OFFSET + rank)


def test_merge_sums_reciprocal_ranks_and_records_sources() -> None:
    merged = merge_ranked([[10, 20, 30, -1], [20, 40]], [1.0, 1.0])
    assert merged.rows.tolist() == [20, 10, 40, 30]
    np.testing.assert_allclose(merged.scores, [r(2) + r(1), r(1), r(2), r(3)])
    assert merged.sources.tolist() == [0b11, 0b01, 0b10, 0b01]
    assert source_names(0b10, ["m2grl", "cooc"]) == ["cooc"]


def test_source_lists_name_and_count_each_candidate_per_channel() -> None:
    masks = np.array([0b11, 0b01, 0b10, 0b01], dtype=np.uint8)
    channels, counts = source_lists(masks, ("m2grl", "cooc"))
    assert channels == [["m2grl", "cooc"], ["m2grl"], ["cooc"], ["m2grl"]]
    # a candidate both channels listed counts for both: m2grl 3, cooc 2 (5 for 4 candidates)
    assert counts == {"m2grl": 3, "cooc": 2}
    assert source_lists(np.empty(0, dtype=np.uint8), ("m2grl", "cooc")) == ([], {"m2grl": 0, "cooc": 0})


def test_merge_weights_and_ties() -> None:
    # equal fused scores: the earlier channel's item first
    assert merge_ranked([[1], [2]], [1.0, 1.0]).rows.tolist() == [1, 2]
    # a heavier second channel wins: 0.5/61 < 2/61
    merged = merge_ranked([[1], [2]], [0.5, 2.0])
    assert merged.rows.tolist() == [2, 1]
    np.testing.assert_allclose(merged.scores, [2 * r(1), 0.5 * r(1)])
    assert merge_ranked([[-1], []], [1.0, 1.0]).rows.size == 0


def test_mix_checks_name_what_is_wrong() -> None:
    assert list(check_mix({"cooc": 1, "m2grl": 2})) == ["m2grl", "cooc"]  # canonical order
    assert parse_mix("m2grl=0.5, cooc=0.5") == {"m2grl": 0.5, "cooc": 0.5}
    with pytest.raises(ValueError, match="unknown channel 'bm25'"):
        check_mix({"bm25": 1.0})
    with pytest.raises(ValueError, match="sum to a positive"):
        check_mix({"m2grl": 0.0})
    with pytest.raises(ValueError, match=r"cooc: weight must be a finite number >= 0"):
        check_mix({"cooc": -1.0})
    with pytest.raises(ValueError, match="channel=weight pairs"):
        parse_mix("m2grl:1")


def test_mixed_answer_by_hand(line: ServingIndex) -> None:
    result = line.mixed_neighbours(10, None, 3)
    # depth 3: m2grl 20, 30, 40 (FAISS beyond the 2-wide map); cooc 60, 40
    assert result.item_ids == [40, 20, 60]
    np.testing.assert_allclose(result.scores, [r(3) + r(2), r(1), r(1)], rtol=1e-6)
    assert result.channels == [["m2grl", "cooc"], ["m2grl"], ["cooc"]]
    assert not result.exhausted and result.filtered_out == 0
    assert result.records()[2] == {
        "item_id": 60, "score": pytest.approx(r(1)), "attributes": {"category": 3}, "channels": ["cooc"],
        "cold": False,
    }  # fmt: skip


def test_exclusions_apply_after_the_merge(line: ServingIndex) -> None:
    result = line.mixed_neighbours(10, BOTH, 3, exclude_categories=[2])
    assert result.item_ids == [20, 60, 30]  # 40 ranked first, then removed
    assert result.filtered_out == 1 and not result.exhausted
    assert line.mixed_neighbours(10, BOTH, 2, exclude_items=[40, 20]).item_ids == [60, 30]


def test_deeper_lists_until_k_survive_or_nothing_remains(line: ServingIndex) -> None:
    # categories 1 and 2 excluded: only 60 (category 3) survives the whole catalogue
    result = line.mixed_neighbours(10, BOTH, 3, exclude_categories=[1, 2])
    assert result.item_ids == [60] and result.exhausted and result.filtered_out == 4
    # a trigger the cooc map knows nothing of: m2grl alone fills k, never fewer while candidates remain
    result = line.mixed_neighbours(60, BOTH, 4, exclude_categories=[2])
    assert result.item_ids == [30, 20, 10] and result.exhausted
    assert result.channels == [["m2grl"]] * 3


def test_one_channel_is_the_plain_lookup(line: ServingIndex) -> None:
    plain = line.neighbours(30, "general", 3)
    for mix in ({"m2grl": 1.0}, {"m2grl": 2.0, "cooc": 0.0}):
        mixed = line.mixed_neighbours(30, mix, 3)
        assert mixed.item_ids == plain.item_ids and mixed.scores == plain.scores
        assert mixed.channels == [["m2grl"]] * 3
    ids, _ = line.batch_neighbours([10, 999], "general", 3, mix=BOTH)
    assert ids.tolist() == [[40, 20, 60], [-1, -1, -1]]


def test_a_version_without_the_channel_says_so() -> None:
    plain = ServingIndex.from_vectors(ITEMS, {"category": CATS}, {"general": LINE}, {"general": "l2"}, topn=2)
    assert plain.channels == ("m2grl",) and plain.default_mix == {"m2grl": 1.0}
    with pytest.raises(UnknownChannel, match=r"holds no channel \['cooc'\]"):
        plain.mixed_neighbours(10, BOTH, 3)
    with pytest.raises(InvalidIndexVersion, match="default_mix names channels"):
        ServingIndex.from_vectors(
            ITEMS, {"category": CATS}, {"general": LINE}, {"general": "l2"}, topn=2, default_mix=BOTH
        )


def _cooc_for(n: int) -> ChannelInput:
    ids = np.full((n, 3), -1, dtype=np.int32)
    ids[:, 0] = (np.arange(n) + 1) % n  # each item's cooc neighbour: the next row
    scores = np.where(ids >= 0, 1.0, -np.inf).astype(np.float32)
    return ChannelInput(ids, scores, "test")


def test_built_version_holds_the_channel(tmp_path: Path, model_dir: Path) -> None:
    root = tmp_path / "index"
    build_index(
        model_dir, root, FAST, version="v1", progress=False, channels={"cooc": _cooc_for(300)},
        default_mix={"cooc": 3.0, "m2grl": 1.0},
    )  # fmt: skip
    layout = IndexRoot(root).version("v1")
    manifest = read_json(layout.manifest)
    assert manifest["channels"]["cooc"]["topn"] == 3 and manifest["default_mix"] == {
        "m2grl": 1.0,
        "cooc": 3.0,
    }
    assert {"cooc/topn_ids.npy", "cooc/topn_scores.npy"} <= set(manifest["files"])
    index = ServingIndex.load(layout.root)
    assert index.channels == ("m2grl", "cooc") and index.default_mix == {"m2grl": 1.0, "cooc": 3.0}
    items = np.load(layout.items)
    result = index.mixed_neighbours(int(items[0]), None, 5)
    # the heavier cooc channel's only neighbour (the next row) leads the merged answer
    assert result.item_ids[0] == int(items[1]) and "cooc" in result.channels[0]  # type: ignore[index]
    # a tampered map (rows out of range) is refused on load
    bad = np.load(layout.topn_ids("cooc"))
    bad[0, 0] = 10_000
    np.save(layout.topn_ids("cooc"), bad)
    rehash(layout.root)
    with pytest.raises(InvalidIndexVersion, match="cooc/topn_ids has row indices outside"):
        ServingIndex.load(layout.root)


def test_build_refuses_bad_channels(tmp_path: Path, model_dir: Path) -> None:
    root = tmp_path / "index"
    with pytest.raises(InvalidArtifact, match=r"channel 'cooc': map of shape \(10, 3\)"):
        build_index(model_dir, root, FAST, progress=False, channels={"cooc": _cooc_for(10)})
    with pytest.raises(ValueError, match="default_mix: channels \\['cooc'\\] are not built"):
        build_index(model_dir, root, FAST, progress=False, default_mix={"m2grl": 1, "cooc": 1})
    assert not (root / "versions").exists() or not any((root / "versions").iterdir())


def test_a_shared_list_serves_every_trigger_without_itself() -> None:
    index = ServingIndex.from_vectors(
        ITEMS, {"category": CATS}, {"general": LINE}, {"general": "l2"}, topn=2,
        channel_maps={"popular": (np.array([[2, 0, 5]]), np.array([[3.0, 2.0, 1.0]]))},
    )  # fmt: skip
    popular = {"popular": 1.0}
    result = index.mixed_neighbours(30, popular, 2)  # item 30 is row 2, first on the list: left out
    assert result.item_ids == [10, 60] and result.channels == [["popular"]] * 2
    assert result.channel_counts == {"popular": 2}
    assert index.mixed_neighbours(10, popular, 2).item_ids == [30, 60]
    # beside m2grl: 30 is both 10's nearest (1/61 + 1/62 as m2grl's second) and the list's first
    assert index.mixed_neighbours(10, {"m2grl": 1.0, "popular": 1.0}, 3).item_ids[0] == 30
    with pytest.raises(ValueError, match=r"expected \(6, T\) or \(1, T\)"):
        ServingIndex.from_vectors(
            ITEMS, {"category": CATS}, {"general": LINE}, {"general": "l2"}, topn=2,
            channel_maps={"popular": (np.zeros((2, 3), np.int32), np.ones((2, 3)))},
        )  # fmt: skip


def test_precomputed_default_mix_equals_the_online_merge(tmp_path: Path, model_dir: Path) -> None:
    root = tmp_path / "index"
    mix = {"m2grl": 1.0, "cooc": 2.0, "popular": 0.5, "category_popular": 0.75}
    rng = np.random.default_rng(0)
    ids = np.stack([rng.permutation(300)[:12] for _ in range(300)]).astype(np.int32)
    ids[ids == np.arange(300)[:, None]] = -1  # never the item itself
    cooc = ChannelInput(ids, np.ones(ids.shape, dtype=np.float32), "random")
    shared = rng.permutation(300)[None, :15].astype(np.int32)  # every trigger's list, itself left out
    popular = ChannelInput(shared, np.ones(shared.shape, dtype=np.float32), "random")
    by_group = np.stack([rng.permutation(300)[:10] for _ in range(4)]).astype(np.int32)[np.arange(300) % 4]
    by_group[by_group == np.arange(300)[:, None]] = -1  # a list per group of triggers, itself left out
    category = ChannelInput(by_group, np.ones(by_group.shape, dtype=np.float32), "random")
    channels = {"cooc": cooc, "popular": popular, "category_popular": category}
    build_index(model_dir, root, FAST, version="v1", progress=False, channels=channels, default_mix=mix)
    layout = IndexRoot(root).version("v1")
    manifest = read_json(layout.manifest)
    assert manifest["fused"] == {"mix": mix, "topn": 20, "depth": 20}
    assert manifest["channels"]["popular"]["rows"] == 1 and manifest["channels"]["cooc"]["rows"] == 300
    index = ServingIndex.load(layout.root)
    assert index.mixed_neighbours(
        int(np.load(layout.items)[shared[0, 0]]), {"popular": 1.0}, 14
    ).item_ids == (np.load(layout.items)[shared[0, 1:]].tolist())
    # same ranking, merged online (not the default mix)
    scaled = {"m2grl": 3.0, "cooc": 6.0, "popular": 1.5, "category_popular": 2.25}
    listed_by: set[str] = set()
    for item in np.load(layout.items)[::7].tolist():
        for k, excluded in ((10, ()), (20, ()), (15, (0, 1)), (20, (0, 1, 2, 3))):
            cached = index.mixed_neighbours(item, None, k, exclude_categories=excluded)
            online = index.mixed_neighbours(item, scaled, k, exclude_categories=excluded)
            assert cached.item_ids == online.item_ids and cached.channels == online.channels
            np.testing.assert_allclose(np.array(cached.scores) * 3, online.scores, rtol=1e-6)
            assert cached.filtered_out == online.filtered_out
            listed_by.update(name for names in cached.channels or [] for name in names)
    assert listed_by == set(mix)  # each of the four channels placed candidates
