"""Cold items in an index version: placed by hand-checkable rules, marked, checksummed, served."""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np
import pyarrow as pa
import pytest

from core.atomic import atomic_write_json, read_json, sha256_file
from core.id_labels import IdLabels, write_id_labels
from core.layout import DatasetLayout, IndexRoot, IndexVersionLayout
from index.build import build_index
from index.errors import InvalidArtifact, InvalidIndexVersion
from index.explorer import Explorer
from index.inputs import ChannelInput, ColdInput, read_inputs, with_cold
from index.serving import ServingIndex
from offline.jobs.cold_items import cold_builder, cold_input
from tests.index import cold_fixtures as F
from tests.index.conftest import FAST, rehash

CONFIG = FAST.replace(topn=8, recall_k=3, recall_queries=9)


def build(tmp_path: Path, name: str, *, scale: float = 0.5, catalogue: bool = True, **kwargs: object) -> Path:
    dataset = F.write_dataset(
        tmp_path / f"{name}-dataset", catalogue=catalogue, labels=bool(kwargs.pop("labels", False))
    )
    model = F.write_model(tmp_path / f"{name}-model", dataset)
    metric = F.write_metric(tmp_path / f"{name}-metric")
    cold = kwargs.pop("cold", cold_builder(model, scale=scale))
    build_index(
        model, tmp_path / "index", CONFIG, metric_dir=metric, version=name, publish=False, progress=False,
        cold=cold, **kwargs,  # type: ignore[arg-type]
    )  # fmt: skip
    return IndexRoot(tmp_path / "index").version(name).root


def test_cold_items_are_placed_by_hand_and_marked(tmp_path: Path) -> None:
    version = build(tmp_path, "v", scale=0.5)
    layout = IndexVersionLayout(version)
    items = np.load(layout.items)
    np.testing.assert_array_equal(items, np.concatenate([F.WARM, F.COLD]))
    np.testing.assert_array_equal(np.load(layout.cold), [False] * 6 + [True] * 3)
    general = faiss.read_index(str(layout.faiss_index("general"))).reconstruct_n(0, 9)
    np.testing.assert_allclose(general[:6], F.GENERAL)  # warm rows untouched
    np.testing.assert_allclose(general[6:], F.expected_general(0.5), rtol=1e-6)
    diversity = faiss.read_index(str(layout.faiss_index("diversity"))).reconstruct_n(0, 9)
    np.testing.assert_allclose(diversity[6:], F.expected_diversity(), rtol=1e-6)
    np.testing.assert_array_equal(np.load(layout.attributes("category"))[6:], F.COLD_CATEGORY)
    np.testing.assert_array_equal(np.load(layout.attributes("shop"))[6:], F.COLD_SHOP)
    manifest = read_json(layout.manifest)
    assert manifest["cold"]["items"] == 3 and manifest["cold"]["rule"] == "recent-mean"
    assert manifest["cold"]["scale"] == 0.5 and manifest["cold"]["matched"] == [1, 1, 1]
    assert manifest["cold"]["decay"] == 0.5
    assert manifest["files"]["cold.npy"]["sha256"] == sha256_file(layout.cold)
    assert manifest["num_items"] == 9
    # the explorer's card calls them cold (no training event)
    index = ServingIndex.load(version)
    explorer = Explorer.load(version, index.manifest)
    cards = explorer.cards([15, 10])
    assert cards[0] is not None and cards[0].cold and cards[1] is not None and not cards[1].cold


def test_cold_trigger_and_cold_candidates_are_flagged(tmp_path: Path) -> None:
    index = ServingIndex.load(build(tmp_path, "v", scale=1.0))
    assert index.num_cold == 3 and index.is_cold(15) and not index.is_cold(10)
    result = index.neighbours(15, "general", 8)
    assert len(result) == 8 and 15 not in result.item_ids
    assert result.cold == [int(i) in F.COLD for i in result.item_ids]
    warm = index.neighbours(10, "general", 8).records()
    assert [r["cold"] for r in warm] == [r["item_id"] in F.COLD for r in warm] and len(warm) == 8
    assert [r["cold"] for r in index.neighbours(25, "diversity", 8).records()].count(True) == 2
    with pytest.raises(Exception, match="not in the index"):
        index.neighbours(F.OUTSIDE, "general", 3)


def test_a_scale_below_one_ranks_cold_below_equally_close_warm(tmp_path: Path) -> None:
    index = ServingIndex.load(build(tmp_path, "v", scale=0.5))
    scores = dict(
        zip(
            *[index.neighbours(10, "general", 8).item_ids, index.neighbours(10, "general", 8).scores],
            strict=True,
        )
    )
    u = F.unit(F.GENERAL)
    assert scores[15] == pytest.approx(0.5 * float(F.GENERAL[0] @ (u[0] + u[1]) / 2), rel=1e-5)


def test_cold_rows_have_no_cooc_neighbours(tmp_path: Path) -> None:
    seen: list[int] = []

    def cooc(items: np.ndarray) -> dict[str, ChannelInput]:
        seen.append(len(items))
        ids = np.full((len(items), 2), -1, dtype=np.int32)
        ids[:6] = [[1, 2], [0, 2], [0, 1], [4, 5], [3, 5], [3, 4]]  # warm rows only, as Item-CF gives them
        return {"cooc": ChannelInput(ids, np.where(ids >= 0, 1.0, 0.0).astype(np.float32), "test")}

    index = ServingIndex.load(build(tmp_path, "v", channels=cooc, default_mix={"m2grl": 0.5, "cooc": 0.5}))
    assert seen == [9]  # the channel builder sees the cold items
    cold = index.mixed_neighbours(15, None, 5)
    assert len(cold) == 5 and all(c == ["m2grl"] for c in cold.channels or [])
    assert [r["cold"] for r in cold.records()] == [int(i) in F.COLD for i in cold.item_ids]
    warm = index.mixed_neighbours(10, None, 5)
    assert {"m2grl", "cooc"} <= {c for cs in warm.channels or [] for c in cs}


def test_a_corrupted_marker_is_refused(tmp_path: Path) -> None:
    version = build(tmp_path, "v")
    layout = IndexVersionLayout(version)
    marker = np.load(layout.cold)
    marker[-1] = False  # same size, other content
    np.save(layout.cold, marker)
    with pytest.raises(InvalidIndexVersion, match="cold.npy does not match its sha256"):
        ServingIndex.load(version)
    rehash(version)  # even with its checksum updated, it disagrees with the manifest's count
    with pytest.raises(InvalidIndexVersion, match="cold.npy marks 2 items, the manifest says 3"):
        ServingIndex.load(version)
    layout.cold.unlink()
    with pytest.raises(InvalidIndexVersion, match="cold.npy"):
        ServingIndex.load(version)


def test_a_marker_missing_from_the_inventory_is_refused(tmp_path: Path) -> None:
    version = build(tmp_path, "v")
    layout = IndexVersionLayout(version)
    manifest = read_json(layout.manifest)
    del manifest["files"]["cold.npy"]
    atomic_write_json(layout.manifest, manifest)
    with pytest.raises(InvalidIndexVersion, match="does not list the required file cold.npy"):
        ServingIndex.load(version)


def _files(version: Path) -> dict[str, bytes]:
    skip = {"manifest.json", "_COMPLETE"}
    return {
        p.relative_to(version).as_posix(): p.read_bytes()
        for p in sorted(version.rglob("*"))
        if p.is_file() and p.name not in skip
    }


def test_without_catalogue_the_version_is_unchanged(tmp_path: Path) -> None:
    today = build(tmp_path, "today", catalogue=False, cold=None)
    without = build(tmp_path, "without", catalogue=False)
    none_rule = build(tmp_path, "none", catalogue=True, cold=None)
    assert _files(without) == _files(today) == _files(none_rule)
    assert not IndexVersionLayout(without).cold.exists()
    assert read_json(IndexVersionLayout(without).manifest)["cold"] is None
    rule_none = build(tmp_path, "rule-none", cold=cold_builder(tmp_path / "rule-none-model", rule="none"))
    assert _files(rule_none) == _files(today)
    assert ServingIndex.load(without).neighbours(10, "general", 3).cold is None


def test_string_ids_of_cold_items_are_served_through_the_labels(tmp_path: Path) -> None:
    index = ServingIndex.load(build(tmp_path, "v", labels=True))
    assert index.labels is not None and index.labels.item is not None
    assert index.labels.item.names[15] == "I15"
    category = index.labels.of("category")
    assert category is not None and category.names[index.attribute_of(35, "category")] == "C5"


def test_unlabelled_cold_ids_and_bad_options_are_clear_errors(tmp_path: Path) -> None:
    dataset = F.write_dataset(tmp_path / "dataset")
    write_id_labels(DatasetLayout(dataset).labels("item"), IdLabels(pa.array([f"I{i}" for i in range(30)])))
    model = F.write_model(tmp_path / "model", dataset)
    inputs = read_inputs(model)
    with pytest.raises(ValueError, match="item ids outside the 30 labels"):
        cold_input(model, dataset, inputs)
    with pytest.raises(ValueError, match="--cold-rule"):
        cold_builder(model, rule="side-ridge-typo")
    with pytest.raises(ValueError, match="--cold-scale"):
        cold_builder(model, scale=0.0)
    nothing = build_index  # a failed build leaves no version behind
    with pytest.raises(ValueError):
        nothing(model, tmp_path / "index", CONFIG, version="x", progress=False, cold=cold_builder(model))
    assert not (tmp_path / "index" / "versions" / "x").exists()


def test_recent_mean_weighs_each_group_by_first_appearance(tmp_path: Path) -> None:
    """Item 10 first appeared before the 5 others: at decay 0.5 it weighs exp(-(5/6) / 0.5) in both
    modes (cold 15's group is 10 and 20; 25's group, 40 and 50, is unchanged); ``group-mean`` ignores
    the dates. Test events (cold 15's) never count as a first appearance. Without the events table the
    rule cannot date the items and says so."""
    dataset = F.write_dataset(tmp_path / "dataset", first_seen=np.array([0, 1000, 1000, 1000, 1000, 1000]))
    model = F.write_model(tmp_path / "model", dataset)
    inputs = read_inputs(model, F.write_metric(tmp_path / "metric"))
    recent = cold_input(model, dataset, inputs, scale=1.0, decay=0.5)
    plain = cold_input(model, dataset, inputs, rule="group-mean", scale=1.0)
    assert recent is not None and plain is not None
    w = np.array([np.exp(-5 / 6 / 0.5), 1, 1, 1, 1, 1])[:, None]
    u, z = F.unit(F.GENERAL), F.DIVERSITY.astype(np.float64)
    np.testing.assert_allclose(recent.vectors["general"][0], (w[:2] * u[:2]).sum(0) / w[:2].sum(), rtol=1e-6)
    np.testing.assert_allclose(recent.vectors["general"][1], F.expected_general(1.0)[1], rtol=1e-6)
    np.testing.assert_allclose(recent.vectors["general"][2], (w * u).sum(0) / w.sum(), rtol=1e-6)
    np.testing.assert_allclose(
        recent.vectors["diversity"][0], (w[:2] * z[:2]).sum(0) / w[:2].sum(), rtol=1e-6
    )
    np.testing.assert_allclose(plain.vectors["general"], F.expected_general(1.0), rtol=1e-6)
    assert recent.details["decay"] == 0.5 and "decay" not in plain.details
    with pytest.raises(ValueError, match="--cold-decay"):
        cold_builder(model, decay=0.0)
    DatasetLayout(dataset).events.unlink()
    with pytest.raises(ValueError, match="events.parquet is missing: recent-mean dates items by it"):
        cold_input(model, dataset, inputs)
    assert cold_input(model, dataset, inputs, rule="group-mean") is not None


def test_cold_inputs_that_do_not_fit_are_refused(tmp_path: Path) -> None:
    model = F.write_model(tmp_path / "model")
    inputs = read_inputs(model)
    good = {"general": np.zeros((1, 3), dtype=np.float32)}
    with pytest.raises(InvalidArtifact, match="already have a trained row"):
        with_cold(inputs, ColdInput(np.array([10]), {}, good, {}))
    with pytest.raises(InvalidArtifact, match="expected \\(1, 3\\)"):
        with_cold(inputs, ColdInput(np.array([11]), {}, {"general": np.zeros((1, 2), dtype=np.float32)}, {}))
    with pytest.raises(InvalidArtifact, match="NaN"):
        with_cold(
            inputs, ColdInput(np.array([11]), {}, {"general": np.full((1, 3), np.nan, dtype=np.float32)}, {})
        )
    out = with_cold(inputs, ColdInput(np.array([11]), {}, good, {"rule": "test"}))
    assert out.num_items == 7 and out.cold is not None and out.cold.tolist() == [False] * 6 + [True]
    assert out.attributes["category"][-1] == -1 and out.cold_details == {"rule": "test", "items": 1}


def test_cold_vectors_keep_their_length_beside_unit_warm_vectors(tmp_path: Path) -> None:
    """With the default norm exponent 1 the warm rows are unit vectors; a cold row stays the mean of its
    group's unit vectors times the scale (its length says how much the group agrees), not a unit one."""
    dataset = F.write_dataset(tmp_path / "dataset")
    model = F.write_model(tmp_path / "model", dataset, norm_exponent=1.0)
    build_index(
        model, tmp_path / "index", CONFIG, version="v", progress=False, cold=cold_builder(model, scale=0.9)
    )
    layout = IndexRoot(tmp_path / "index").version("v")
    general = faiss.read_index(str(layout.faiss_index("general"))).reconstruct_n(0, 9)
    np.testing.assert_allclose(general[:6], F.unit(F.GENERAL), rtol=1e-6)
    np.testing.assert_allclose(general[6:], F.expected_general(0.9), rtol=1e-6)
    assert float(np.linalg.norm(general[8])) < 0.9 * 0.8  # the all-items fallback is short
