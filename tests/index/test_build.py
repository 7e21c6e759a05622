"""build_index: outputs per the layout, recall against numpy brute force, refusals publish nothing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from core.atomic import read_json, sha256_file
from core.layout import IndexRoot
from index.build import build_index, new_version_name
from index.errors import InvalidArtifact, InvalidIndexVersion, RecallTooLow
from index.publish import current_version, list_versions
from index.serving import ServingIndex
from tests.index.conftest import FAST, clustered, write_metric


def numpy_topk(x: np.ndarray, k: int, metric: str) -> np.ndarray:
    sims = x @ x.T if metric == "ip" else -((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(sims, -np.inf)
    return np.argsort(-sims, axis=1, kind="stable")[:, :k]


def test_flat_build_writes_the_layout(tmp_path: Path, model_dir: Path, metric_dir: Path) -> None:
    root = tmp_path / "index"
    version = build_index(model_dir, root, FAST, metric_dir=metric_dir, version="v1", progress=False)
    assert version == "v1" and current_version(root) == "v1"
    layout = IndexRoot(root).version("v1")
    assert layout.complete_marker.is_file()
    manifest = read_json(layout.manifest)
    assert manifest["num_items"] == 300 and manifest["attribute_views"] == ["category", "shop"]
    assert manifest["sources"]["model"]["manifest_sha256"] == sha256_file(model_dir / "manifest.json")
    assert manifest["sources"]["metric"]["manifest_sha256"] == sha256_file(metric_dir / "manifest.json")
    assert manifest["model_version"] == "model-test"
    assert set(manifest["files"]) == {
        "items.npy",
        "attributes/category.npy",
        "attributes/shop.npy",
        *(
            f"{m}/{f}"
            for m in ("general", "diversity")
            for f in ("index.faiss", "topn_ids.npy", "topn_scores.npy")
        ),
        # the explorer's map and training counts (no dataset here: no titles, no labels)
        "explorer/map.npy",
        "explorer/train_counts.npy",
    }
    for rel, info in manifest["files"].items():
        assert sha256_file(layout.root / rel) == info["sha256"]
    general, diversity = manifest["modes"]["general"], manifest["modes"]["diversity"]
    assert (general["metric"], general["dim"], general["index_type"]) == ("ip", 8, "flat")
    assert (diversity["metric"], diversity["dim"]) == ("l2", 4)
    assert general["recall"] == 1.0 and diversity["recall"] == 1.0

    np.testing.assert_array_equal(np.load(layout.items), np.arange(300) * 10 + 1)
    ids = np.load(layout.topn_ids("general"))
    assert ids.dtype == np.int32 and ids.shape == (300, 20)
    assert np.load(layout.topn_scores("general")).dtype == np.float16
    x = np.load(model_dir / "embeddings" / "item.npy")
    # exact index: the map equals numpy brute force (up to float16-free ties; rows are distinct here)
    np.testing.assert_array_equal(ids, numpy_topk(x, 20, "ip"))
    # the diversity map leaves out each item's own category: the 20 nearest, those dropped, the rest moved up
    z = np.load(metric_dir / "diversity.npy")
    cats = np.load(layout.attributes("category"))
    assert diversity["excludes_own"] == "category" and "excludes_own" not in general
    nearest = numpy_topk(z, 20, "l2")
    expected = np.full((300, 20), -1)
    for row in range(300):
        other = nearest[row][cats[nearest[row]] != cats[row]]
        expected[row, : len(other)] = other
    np.testing.assert_array_equal(np.load(layout.topn_ids("diversity")), expected)
    assert (expected == -1).any()  # some rows lost neighbours
    served = ServingIndex.load(layout.root)
    result = served.neighbours(1, "diversity", 20)  # the mode never answers the trigger's own category
    order = numpy_topk(z, 299, "l2")[0]
    others = order[cats[order] != cats[0]]
    assert [c.item_id for c in result.candidates] == (others[:20] * 10 + 1).tolist()
    assert result.candidates[0].score == pytest.approx(-((z[others[0]] - z[0]) ** 2).sum(), rel=2e-3)


@pytest.mark.parametrize("index_type", ["hnsw", "ivf_flat", "ivf_pq"])
def test_approximate_recall_against_numpy(tmp_path: Path, make_model, index_type: str) -> None:
    x = clustered(1000, 16, seed=5, clusters=20)
    model = make_model(x)
    config = FAST.replace(
        index_type=index_type,
        topn=30,
        recall_k=10,
        recall_floor=0.5,
        recall_queries=300,
        hnsw_m=16,
        ef_construction=64,
        ef_search=64,
        nprobe=8,
        pq_m=8,
        pq_nbits=6,
    )
    build_index(model, tmp_path / "index", config, version="v", progress=False)
    layout = IndexRoot(tmp_path / "index").version("v")
    got = np.load(layout.topn_ids("general"))[:, :10]
    truth = numpy_topk(x, 10, "ip")
    recall = np.mean([len(set(g) & set(t)) / 10 for g, t in zip(got, truth, strict=True)])
    manifest = read_json(layout.manifest)["modes"]["general"]
    assert manifest["index_type"] == index_type
    floor = {"hnsw": 0.95, "ivf_flat": 0.9, "ivf_pq": 0.5}[index_type]
    assert recall >= floor
    # the manifest's sampled recall estimates the full one
    assert abs(manifest["recall"] - recall) < 0.06


def test_recall_too_low_publishes_nothing(tmp_path: Path, make_model, model_dir: Path) -> None:
    root = tmp_path / "index"
    build_index(model_dir, root, FAST, version="good", progress=False)
    noise = np.random.default_rng(0).normal(size=(2000, 16)).astype(np.float32)
    config = FAST.replace(index_type="ivf_flat", nlist=64, nprobe=1, recall_floor=0.99)
    with pytest.raises(RecallTooLow, match="recall@10"):
        build_index(make_model(noise), root, config, progress=False)
    assert list_versions(root) == ["good"] and current_version(root) == "good"
    assert [p.name for p in IndexRoot(root).versions.iterdir()] == ["good"]  # no temporary left


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        ("nan", "row 7 has NaN"),
        ("rows", "rows but the item vocabulary has"),
        ("duplicate", "appears more than once"),
        ("attribute", "one attribute per item"),
        ("metric_dim", "rows but the item vocabulary has"),
        ("metric_nan", "NaN"),
        ("missing", "required file is missing"),
    ],
)
def test_broken_inputs_are_refused(
    tmp_path: Path, model_dir: Path, metric_dir: Path, breakage: str, message: str
) -> None:
    x = np.load(model_dir / "embeddings" / "item.npy")
    if breakage == "nan":
        x[7, 2] = np.nan
        np.save(model_dir / "embeddings" / "item.npy", x)
    elif breakage == "rows":
        np.save(model_dir / "embeddings" / "item.npy", x[:-1])
    elif breakage == "duplicate":
        ids = np.load(model_dir / "vocab" / "item.npy")
        ids[5] = ids[4]
        np.save(model_dir / "vocab" / "item.npy", ids)
    elif breakage == "attribute":
        np.save(model_dir / "attributes" / "category.npy", np.zeros(299, dtype=np.int64))
    elif breakage == "metric_dim":
        write_metric(metric_dir, clustered(301, 4, seed=0))
    elif breakage == "metric_nan":
        z = np.load(metric_dir / "diversity.npy")
        z[0, 0] = np.inf
        np.save(metric_dir / "diversity.npy", z)
    elif breakage == "missing":
        (model_dir / "vocab" / "item.npy").unlink()
    root = tmp_path / "index"
    with pytest.raises(InvalidArtifact, match=message):
        build_index(model_dir, root, FAST, metric_dir=metric_dir, progress=False)
    assert list_versions(root) == [] and current_version(root) is None


def test_unusable_index_type_is_a_clear_error(tmp_path: Path, model_dir: Path) -> None:
    config = FAST.replace(index_type="ivf_pq", pq_m=3)
    with pytest.raises(ValueError, match="pq_m"):
        build_index(model_dir, tmp_path / "index", config, progress=False)
    assert current_version(tmp_path / "index") is None


def test_version_names_publish_flag_and_retention(tmp_path: Path, model_dir: Path) -> None:
    root = tmp_path / "index"
    first = build_index(model_dir, root, FAST, progress=False)
    assert len(first) == len("20250101T000000Z") and first.endswith("Z")
    with pytest.raises(FileExistsError):
        build_index(model_dir, root, FAST, version=first, progress=False)
    with pytest.raises(ValueError, match="version"):
        build_index(model_dir, root, FAST, version="../evil", progress=False)
    unpublished = build_index(model_dir, root, FAST, version="b-unpublished", publish=False, progress=False)
    assert current_version(root) == first and unpublished in list_versions(root)
    config = FAST.replace(retention=2)
    for name in ("c", "d", "e"):
        build_index(model_dir, root, config, version=name, progress=False)
    assert list_versions(root) == ["d", "e"] and current_version(root) == "e"


def test_taken_timestamp_gets_a_suffix(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    now = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
    root = IndexRoot(tmp_path)
    assert new_version_name(tmp_path, now) == "20240506T070809Z"
    (root.versions / "20240506T070809Z").mkdir(parents=True)
    assert new_version_name(tmp_path, now) == "20240506T070809Z-1"
    (root.versions / "20240506T070809Z-1").mkdir()
    assert new_version_name(tmp_path, now) == "20240506T070809Z-2"


def test_catalogue_smaller_than_topn_pads_the_map(tmp_path: Path, make_model) -> None:
    x = np.eye(4, 3, dtype=np.float32) + 0.1
    model = make_model(x, ids=np.array([5, 6, 7, 8], dtype=np.int64), categories=np.array([1, 1, 2, 2]))
    build_index(model, tmp_path / "index", FAST, version="tiny", progress=False)
    layout = IndexRoot(tmp_path / "index").version("tiny")
    ids = np.load(layout.topn_ids("general"))
    assert ids.shape == (4, 20) and (ids[:, 3:] == -1).all() and (ids[:, :3] >= 0).all()
    served = ServingIndex.load(layout.root)
    result = served.neighbours(5, "general", 10, exclude_categories=[2])
    assert [c.item_id for c in result.candidates] == [6] and result.exhausted and result.filtered_out == 2


def test_model_norm_exponent_scales_the_served_vectors(tmp_path: Path, make_model) -> None:  # type: ignore[no-untyped-def]
    from index.inputs import read_inputs

    # item 0 is short and points along x; item 1 is long and points at 45 degrees; item 2 along y
    vectors = np.array([[0.1, 0.0], [3.0, 3.0], [0.0, 1.0], [1.0, 0.2]], dtype=np.float32)

    def manifest(exponent: object) -> dict[str, object]:
        return {"version": "m", "views": ["item", "category"], "config": {"norm_exponent": exponent}}

    cosine = read_inputs(make_model(vectors, manifest=manifest(1.0))).modes["general"]
    assert cosine.metric == "ip"
    np.testing.assert_allclose(np.linalg.norm(cosine.vectors, axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(cosine.vectors[1], [2**-0.5, 2**-0.5], rtol=1e-6)
    half = read_inputs(make_model(vectors, manifest=manifest(0.5))).modes["general"]
    # |(3, 3)| = sqrt(18): divided by 18 ** 0.25, its length becomes 18 ** 0.25
    np.testing.assert_allclose(np.linalg.norm(half.vectors, axis=1)[1], 18**0.25, rtol=1e-6)
    raw = read_inputs(make_model(vectors)).modes[
        "general"
    ]  # no config.norm_exponent: the paper's inner product
    np.testing.assert_array_equal(raw.vectors, vectors)
    # served: from item 0, cosine ranks item 3 (id 31) first; the raw inner product ranks the long item 1
    for exponent, expected in ((1.0, 31), (0.0, 11)):
        root = tmp_path / f"a{exponent}"
        version = build_index(
            make_model(vectors, manifest=manifest(exponent)), root, FAST, version="v1", progress=False
        )
        served = ServingIndex.load(IndexRoot(root).version(version).root)
        assert served.batch_neighbours(np.array([1]), "general", 1)[0].tolist() == [[expected]]
    for bad in (1.5, -0.1, "cosine", True):
        with pytest.raises(InvalidArtifact, match="config.norm_exponent"):
            read_inputs(make_model(vectors, manifest=manifest(bad)))


def test_a_diversity_map_naming_an_unstored_view_is_refused(
    tmp_path: Path, model_dir: Path, metric_dir: Path
) -> None:
    build_index(model_dir, tmp_path / "index", FAST, metric_dir=metric_dir, version="v1", progress=False)
    layout = IndexRoot(tmp_path / "index").version("v1")
    manifest = read_json(layout.manifest)
    for bad, reason in (
        ("brand", "excludes_own names 'brand', not a stored view"),
        (3, "excludes_own must be"),
    ):
        manifest["modes"]["diversity"]["excludes_own"] = bad
        layout.manifest.write_text(json.dumps(manifest))
        with pytest.raises(InvalidIndexVersion, match=reason):
            ServingIndex.load(layout.root)
