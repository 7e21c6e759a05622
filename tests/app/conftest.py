"""Shared fixtures: a real index root built by ``index.build.build_index`` from tiny model and metric
folders written with numpy (``core.layout.ModelLayout`` / ``MetricLayout``), settings and clients."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import Settings
from core.atomic import atomic_write_json
from core.id_labels import IdLabels, write_id_labels
from core.layout import DatasetLayout, MetricLayout, ModelLayout
from index.build import build_index
from index.config import IndexConfig

N_ITEMS = 60
N_CATEGORIES = 6
ITEM_IDS = (100 + 3 * np.arange(N_ITEMS)).astype(np.int64)  # 101, 102, ... are unknown
CATEGORIES = (np.arange(N_ITEMS) % N_CATEGORIES).astype(np.int64)
SHOPS = (np.arange(N_ITEMS) % 4).astype(np.int64)
UNKNOWN_ITEM = 101


@dataclass(frozen=True)
class Vectors:
    """The vectors a version was built from, to recompute answers by brute force."""

    general: np.ndarray
    diversity: np.ndarray


def vectors_for(seed: int) -> Vectors:
    rng = np.random.default_rng(seed)
    g = rng.normal(size=(N_ITEMS, 8)).astype(np.float32)
    z = rng.normal(size=(N_ITEMS, 4)).astype(np.float32)
    return Vectors(g, z)


def write_model_and_metric(root: Path, vectors: Vectors, items: np.ndarray = ITEM_IDS) -> tuple[Path, Path]:
    model = ModelLayout(root / "model")
    for path in (model.embeddings("item"), model.vocab("item"), model.attributes("category")):
        path.parent.mkdir(parents=True, exist_ok=True)
    np.save(model.embeddings("item"), vectors.general)
    np.save(model.vocab("item"), items)
    np.save(model.attributes("category"), CATEGORIES)
    np.save(model.attributes("shop"), SHOPS)
    atomic_write_json(model.manifest, {"version": "model-test", "views": ["item", "category", "shop"]})
    metric = MetricLayout(root / "metric")
    metric.root.mkdir(parents=True, exist_ok=True)
    np.save(metric.diversity, vectors.diversity)
    atomic_write_json(metric.manifest, {"source_model": "model-test"})
    return model.root, metric.root


INDEX_CONFIG = IndexConfig(index_type="flat", topn=12, device="cpu", recall_queries=20, recall_k=5)


def build_version(index_root: Path, work: Path, version: str, seed: int, *, publish: bool) -> Vectors:
    vectors = vectors_for(seed)
    model_dir, metric_dir = write_model_and_metric(work / version, vectors)
    build_index(
        model_dir, index_root, INDEX_CONFIG, metric_dir=metric_dir, version=version, publish=publish,
        progress=False,
    )  # fmt: skip
    return vectors


#: a dataset with string item and category ids: dense id ``i`` is ``ITEM_LABELS[i]`` (category
#: ``CATEGORY_LABELS[CATEGORIES[i]]``); shops keep integer ids
ITEM_LABELS = ("B07-abc", *(f"B08-{i:03d}" for i in range(1, N_ITEMS)))
CATEGORY_LABELS = ("books", "garden", "music", "outdoor", "toys", "tv")


def build_labelled_version(index_root: Path, work: Path, version: str, seed: int) -> Vectors:
    """Publish ``version``, built from a dataset whose item and category ids were strings (the labels
    ``m2grl prepare`` writes; the model's vocabulary holds the dense ids)."""
    vectors = vectors_for(seed)
    dataset = DatasetLayout(work / version / "dataset")
    write_id_labels(dataset.labels("item"), IdLabels(pa.array(list(ITEM_LABELS))))
    write_id_labels(dataset.labels("category"), IdLabels(pa.array(list(CATEGORY_LABELS))))
    atomic_write_json(dataset.manifest, {"format": "m2grl-dataset"})
    model_dir, metric_dir = write_model_and_metric(
        work / version, vectors, np.arange(N_ITEMS, dtype=np.int64)
    )
    build_index(
        model_dir, index_root, INDEX_CONFIG, metric_dir=metric_dir, version=version, progress=False,
        dataset_dir=dataset.root,
    )  # fmt: skip
    return vectors


@pytest.fixture(scope="session")
def labelled_built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Vectors]:
    """A read-only index root whose published version ``s1`` speaks string item and category ids."""
    base = tmp_path_factory.mktemp("app-labelled-index")
    vectors = build_labelled_version(base / "index", base / "work", "s1", seed=3)
    return base / "index", vectors


@pytest.fixture
def labelled_root(labelled_built: tuple[Path, Vectors], tmp_path: Path) -> Path:
    """A private, writable copy of the string-id index root."""
    import shutil

    dst = tmp_path / "labelled-index"
    shutil.copytree(labelled_built[0], dst)
    return dst


@dataclass(frozen=True)
class Built:
    """A read-only index root with ``v1`` published (CURRENT) and ``v2`` built but not published."""

    root: Path
    v1: Vectors
    v2: Vectors


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    base = tmp_path_factory.mktemp("app-index")
    root = base / "index"
    v1 = build_version(root, base / "work", "v1", seed=1, publish=True)
    v2 = build_version(root, base / "work", "v2", seed=2, publish=False)
    return Built(root, v1, v2)


@pytest.fixture
def index_root(built: Built, tmp_path: Path) -> Path:
    """A private, writable copy of the built root (tests may publish or corrupt versions)."""
    import shutil

    dst = tmp_path / "index"
    shutil.copytree(built.root, dst)
    return dst


#: the ingest token of the test settings: POST /events (and /feedback) need it
INGEST_TOKEN = "ingest-s3cret"
INGEST = {"Authorization": f"Bearer {INGEST_TOKEN}"}


def make_settings(index_root: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "index_root": index_root, "reload_poll_s": 60.0, "admin_token": "s3cret", "ingest_token": INGEST_TOKEN,
    }  # fmt: skip
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def client_for() -> Iterator[Callable[..., TestClient]]:
    """``client_for(settings)`` -> a started TestClient (lifespan run); all closed at teardown."""
    clients: list[TestClient] = []

    def make(settings: Settings) -> TestClient:
        client = TestClient(create_app(settings), raise_server_exceptions=False)
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(index_root: Path, client_for: Callable[..., TestClient]) -> TestClient:
    return client_for(make_settings(index_root))


def brute_force(vectors: Vectors, mode: str, item_id: int, excluded_categories: set[int]) -> list[int]:
    """Every other item ranked best first by the mode's score (ip for general, -L2^2 for diversity),
    without the excluded categories."""
    row = int(np.searchsorted(ITEM_IDS, item_id))
    if mode == "general":
        scores = vectors.general @ vectors.general[row]
    else:
        scores = -((vectors.diversity - vectors.diversity[row]) ** 2).sum(axis=1)
    order = np.argsort(-scores, kind="stable")
    keep = [r for r in order if r != row and int(CATEGORIES[r]) not in excluded_categories]
    return [int(ITEM_IDS[r]) for r in keep]


def category(item_id: int) -> int:
    return int(CATEGORIES[int(np.searchsorted(ITEM_IDS, item_id))])


REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class RedisServer:
    port: int
    pid: int

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


def start_redis(workdir: Path) -> RedisServer:
    """Start Debian's redis-server with ``scripts/start_redis.sh`` (installs it when missing)."""
    import subprocess

    out = subprocess.run(
        ["bash", str(REPO / "scripts" / "start_redis.sh"), str(workdir)],
        check=True, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    port, pid = out.stdout.split()
    return RedisServer(int(port), int(pid))


def stop_process(pid: int) -> None:
    import contextlib
    import os
    import signal

    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGCONT)
        os.kill(pid, signal.SIGTERM)
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, 0)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = start_redis(tmp_path_factory.mktemp("redis"))
    yield server
    stop_process(server.pid)
