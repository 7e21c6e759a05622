"""An index version over the bundled MovieLens sample, with its titles and genre names: the real
``prepare`` (titles included), a model of random vectors over the prepared item vocabulary (training
is not what the explorer tests are about), the real cooc channel, the real ``build_index``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.atomic import atomic_write_json
from core.layout import DatasetLayout, MetricLayout, ModelLayout
from index.build import build_index
from index.config import IndexConfig
from offline.data.prepare import prepare_from_source
from offline.jobs.channels import DEFAULT_MIX, dataset_channels

REPO = Path(__file__).resolve().parents[2]
MOVIELENS = REPO / "data" / "movielens-small"
CONFIG = IndexConfig(index_type="flat", topn=50, device="cpu", recall_queries=50, recall_k=10)


@dataclass(frozen=True)
class MovieLensIndex:
    root: Path
    dataset: Path
    model: Path
    version: str


def build_movielens_index(work: Path, *, version: str = "ml", seed: int = 0) -> MovieLensIndex:
    """Prepare the bundled sample under ``work`` and publish one version ``version`` under
    ``work / "index"`` (general, diversity, cooc, the explorer's data with titles)."""
    dataset = DatasetLayout(
        prepare_from_source("movielens", MOVIELENS, work / "dataset", views=("item", "category"))
    )
    items = np.asarray(np.load(dataset.vocab("item")), dtype=np.int64)
    rng = np.random.default_rng(seed)
    model = ModelLayout(work / "model")
    for path in (model.embeddings("item"), model.vocab("item"), model.attributes("category")):
        path.parent.mkdir(parents=True, exist_ok=True)
    np.save(model.embeddings("item"), rng.normal(size=(len(items), 16)).astype(np.float32))
    np.save(model.vocab("item"), items)
    np.save(model.attributes("category"), np.load(dataset.attributes("category")))
    atomic_write_json(
        model.manifest,
        {"version": "random", "views": ["item", "category"], "dataset": str(dataset.root.resolve())},
    )
    metric = MetricLayout(work / "metric")
    metric.root.mkdir(parents=True, exist_ok=True)
    np.save(metric.diversity, rng.normal(size=(len(items), 8)).astype(np.float32))
    atomic_write_json(metric.manifest, {"version": "random"})
    root = work / "index"
    build_index(
        model.root, root, CONFIG, metric_dir=metric.root, version=version, progress=False,
        channels=dataset_channels(dataset.root, items, CONFIG.topn), default_mix=DEFAULT_MIX,
    )  # fmt: skip
    return MovieLensIndex(root=root, dataset=dataset.root, model=model.root, version=version)
