"""Publishing: CURRENT moves only to validated versions, corrupted versions are refused, rollback, prune."""

from __future__ import annotations

import shutil
from pathlib import Path

import faiss
import numpy as np
import pytest

from core.atomic import read_json
from core.layout import IndexRoot
from index.build import build_index
from index.errors import IndexNotReady, InvalidIndexVersion
from index.loader import load_current
from index.publish import PIN_FILE, current_version, list_versions, pinned_versions, prune, publish, rollback
from index.serving import ServingIndex
from tests.index.conftest import FAST, rehash


@pytest.fixture
def root(tmp_path: Path, model_dir: Path) -> Path:
    """An index root with versions v1 and v2 (v2 current)."""
    root = tmp_path / "index"
    for name in ("v1", "v2"):
        build_index(model_dir, root, FAST, version=name, progress=False)
    return root


def version_dir(root: Path, name: str) -> Path:
    return IndexRoot(root).version(name).root


def copy_version(root: Path, src: str, dst: str) -> Path:
    """A copy of ``src`` named ``dst`` (the manifest's version field is informative only)."""
    target = version_dir(root, dst)
    shutil.copytree(version_dir(root, src), target)
    return target


def test_load_current_serves_current(root: Path) -> None:
    served = load_current(root)
    assert served.version == "v2" and served.num_items == 300 and served.modes == ("general",)
    assert served.attribute_views == ("category", "shop")
    assert served.manifest.modes["general"]["index_type"] == "flat"


def test_version_without_marker_is_never_loaded(root: Path) -> None:
    broken = copy_version(root, "v1", "v3")
    (broken / "_COMPLETE").unlink()
    assert list_versions(root) == ["v1", "v2"]
    with pytest.raises(InvalidIndexVersion, match="completion marker"):
        ServingIndex.load(broken)
    with pytest.raises(InvalidIndexVersion, match="completion marker"):
        publish(root, "v3")
    assert current_version(root) == "v2"
    IndexRoot(root).current.write_text("v3\n")  # even if someone points CURRENT at it by hand
    with pytest.raises(IndexNotReady, match="v3"):
        load_current(root)


def test_no_current_is_not_ready(tmp_path: Path) -> None:
    with pytest.raises(IndexNotReady, match="CURRENT"):
        load_current(tmp_path)


def _corrupt(target: Path, kind: str) -> None:
    if kind == "wrong_dimension":
        other = faiss.IndexFlatIP(9)
        other.add(np.ones((300, 9), dtype=np.float32))
        faiss.write_index(other, str(target / "general" / "index.faiss"))
    elif kind == "nan_embeddings":
        index = faiss.read_index(str(target / "general" / "index.faiss"))
        x = index.reconstruct_n(0, index.ntotal)
        x[:] = np.nan
        nan_index = faiss.IndexFlatIP(index.d)
        nan_index.add(x)
        faiss.write_index(nan_index, str(target / "general" / "index.faiss"))
    elif kind == "truncated_index":
        path = target / "general" / "index.faiss"
        path.write_bytes(path.read_bytes()[:1000])
    elif kind == "id_map_short":
        np.save(target / "items.npy", np.load(target / "items.npy")[:-1])
    elif kind == "id_map_duplicate":
        ids = np.load(target / "items.npy")
        ids[1] = ids[0]
        np.save(target / "items.npy", ids)
    elif kind == "map_out_of_range":
        ids = np.load(target / "general" / "topn_ids.npy")
        ids[3, 0] = 300
        np.save(target / "general" / "topn_ids.npy", ids)
    elif kind == "nan_scores":
        scores = np.load(target / "general" / "topn_scores.npy")
        scores[0, 0] = np.nan
        np.save(target / "general" / "topn_scores.npy", scores)
    elif kind == "missing_map":
        (target / "general" / "topn_scores.npy").unlink()
    elif kind == "manifest_garbage":
        (target / "manifest.json").write_text("{not json")


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("wrong_dimension", "dimension 9"),
        ("nan_embeddings", "NaN"),
        ("truncated_index", "unreadable"),
        ("id_map_short", "items.npy has shape"),
        ("id_map_duplicate", "more than once"),
        ("map_out_of_range", "outside"),
        ("nan_scores", "NaN"),
        ("missing_map", "missing"),
        ("manifest_garbage", "manifest unreadable"),
    ],
)
def test_corrupted_versions_are_refused_and_current_stays(root: Path, kind: str, message: str) -> None:
    target = copy_version(root, "v1", "bad")
    _corrupt(target, kind)
    if kind not in ("missing_map", "manifest_garbage"):
        # a tampered file first fails its checksum; re-hash so the deeper check is what refuses it
        with pytest.raises(InvalidIndexVersion, match="bytes|sha256"):
            ServingIndex.load(target)
        rehash(target)
    with pytest.raises(InvalidIndexVersion, match=message):
        ServingIndex.load(target)
    with pytest.raises(InvalidIndexVersion):
        publish(root, "bad")
    assert current_version(root) == "v2"


def test_full_checksums_catch_same_size_tampering(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import index.manifest

    target = version_dir(root, "v1")
    ids = np.load(target / "general" / "topn_ids.npy")
    ids[[0, 0]] = ids[[0, 0]][:, ::-1]
    np.save(target / "general" / "topn_ids.npy", ids)
    monkeypatch.setattr(index.manifest, "CHEAP_HASH_BYTES", 0)  # pretend every file is big
    ServingIndex.load(target).close()  # sizes match: the cheap check passes
    with pytest.raises(InvalidIndexVersion, match="sha256"):
        ServingIndex.load(target, full_checksums=True)


def test_rollback(root: Path) -> None:
    assert rollback(root) == "v1" and current_version(root) == "v1"
    with pytest.raises(ValueError, match="no complete version older"):
        rollback(root)
    assert rollback(root, to="v2") == "v2" and load_current(root).version == "v2"
    with pytest.raises(InvalidIndexVersion, match="not a complete version"):
        rollback(root, to="v9")
    (version_dir(root, "v1") / "general" / "topn_ids.npy").write_bytes(b"junk")
    with pytest.raises(InvalidIndexVersion):
        rollback(root)
    assert current_version(root) == "v2"


def test_current_only_moves_after_validation(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    events: list[str] = []
    real_load = ServingIndex.load.__func__  # type: ignore[attr-defined]

    def spying_load(cls: type[ServingIndex], path: Path, **kwargs: object) -> ServingIndex:
        events.append(f"validate {Path(path).name} (CURRENT={current_version(root)})")
        return real_load(cls, path, **kwargs)

    monkeypatch.setattr(ServingIndex, "load", classmethod(spying_load))
    publish(root, "v1")
    assert events == ["validate v1 (CURRENT=v2)"] and current_version(root) == "v1"
    assert read_json(IndexRoot(root).version("v1").manifest)["version"] == "v1"
    assert IndexRoot(root).current.read_text() == "v1\n"


def test_prune_keeps_newest_and_current(root: Path, model_dir: Path) -> None:
    build_index(model_dir, root, FAST, version="v3", publish=False, progress=False)
    publish(root, "v1")
    assert prune(root, keep=1) == ["v2"]
    assert list_versions(root) == ["v1", "v3"] and current_version(root) == "v1"
    with pytest.raises(ValueError, match="keep"):
        prune(root, keep=0)
    assert not [p for p in IndexRoot(root).versions.iterdir() if p.name.startswith(".")]


def test_prune_keeps_pinned_versions_and_those_of_the_pin_file(root: Path, model_dir: Path) -> None:
    for name in ("v3", "v4"):
        build_index(model_dir, root, FAST, version=name, publish=False, progress=False)
    publish(root, "v4")
    (root / PIN_FILE).write_text("# pinned by the A/B test\nv2  # new-model arm\n\n")
    assert pinned_versions(root) == {"v2"}
    assert prune(root, keep=1, pinned=["v1"]) == ["v3"]
    assert list_versions(root) == ["v1", "v2", "v4"]


def test_a_bad_pin_file_names_its_line(root: Path) -> None:
    (root / PIN_FILE).write_text("v1\n../etc\n")
    with pytest.raises(ValueError, match=r"PINNED:2: version: '../etc' is not a valid version name"):
        prune(root, keep=1)
    assert list_versions(root) == ["v1", "v2"]


def test_build_index_prunes_around_the_pinned_versions(root: Path, model_dir: Path) -> None:
    keep1 = FAST.replace(retention=1)
    build_index(model_dir, root, keep1, version="v3", progress=False, pinned=("v1",))
    assert list_versions(root) == ["v1", "v3"]
