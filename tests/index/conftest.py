"""Tiny model / metric folders written with numpy (``core.layout.ModelLayout`` / ``MetricLayout``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import faiss
import numpy as np
import pytest

from core.atomic import atomic_write_json
from core.layout import IndexVersionLayout
from core.manifests import IndexManifest
from index.config import IndexConfig
from index.manifest import describe_files


def clustered(n: int, dim: int, seed: int, clusters: int = 8) -> np.ndarray:
    """Gaussian blobs: well-separated centres plus small noise (ANN recall is meaningful on them)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim)).astype(np.float32) * 3
    labels = rng.integers(0, clusters, n)
    return (centres[labels] + rng.normal(scale=0.5, size=(n, dim))).astype(np.float32)


def write_model(
    root: Path,
    vectors: np.ndarray,
    *,
    ids: np.ndarray | None = None,
    categories: np.ndarray | None = None,
    view: str = "item",
    manifest: dict | None = None,
) -> Path:
    n = len(vectors)
    (root / "embeddings").mkdir(parents=True, exist_ok=True)
    (root / "vocab").mkdir(exist_ok=True)
    (root / "attributes").mkdir(exist_ok=True)
    np.save(root / "embeddings" / f"{view}.npy", vectors)
    np.save(root / "vocab" / f"{view}.npy", np.arange(n, dtype=np.int64) * 10 + 1 if ids is None else ids)
    cats = np.arange(n, dtype=np.int64) % 5 if categories is None else categories
    np.save(root / "attributes" / "category.npy", cats)
    np.save(root / "attributes" / "shop.npy", np.arange(n, dtype=np.int64) % 3)
    atomic_write_json(
        root / "manifest.json", manifest or {"version": "model-test", "views": [view, "category"]}
    )
    return root


def write_metric(root: Path, z: np.ndarray) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    np.save(root / "diversity.npy", z)
    atomic_write_json(root / "manifest.json", {"source_model": "model-test"})
    return root


def rehash(version_dir: Path) -> None:
    """Recompute the manifest's checksums after a test tampered with a file, so the deeper checks
    (dimensions, NaN, id map) are what refuses the version."""
    layout = IndexVersionLayout(version_dir)
    manifest = IndexManifest.read(layout.manifest)
    manifest.model_copy(update={"files": describe_files(version_dir)}).write(layout.manifest)


#: Small, fast build settings for tests.
FAST = IndexConfig(index_type="flat", topn=20, recall_k=10, recall_queries=100, batch_size=64, threads=1)


@pytest.fixture(autouse=True, scope="session")
def _one_faiss_thread() -> Iterator[None]:
    """One OpenMP thread: on a shared 2-core machine FAISS's spinning threads slow tiny tests 100x."""
    previous = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(previous)


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    return write_model(tmp_path / "model", clustered(300, 8, seed=1))


@pytest.fixture
def metric_dir(tmp_path: Path) -> Path:
    return write_metric(tmp_path / "metric", clustered(300, 4, seed=2))


@pytest.fixture
def make_model(tmp_path: Path) -> Callable[..., Path]:
    counter = iter(range(1000))

    def make(vectors: np.ndarray, **kwargs: object) -> Path:
        return write_model(tmp_path / f"model{next(counter)}", vectors, **kwargs)  # type: ignore[arg-type]

    return make
