"""A tiny model (a real ``M2GRLArtifact`` folder), metric folder and dataset whose catalogue lists items
the model never saw, with every vector small enough to place the cold items by hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from core.atomic import atomic_write_json
from core.catalogue import Catalogue, write_catalogue
from core.id_labels import IdLabels, write_id_labels
from core.layout import DatasetLayout
from core.manifests import ModelManifest
from model.artifact import M2GRLArtifact

#: warm items (the model's vocabulary) with their category and shop
WARM = np.array([10, 20, 30, 40, 50, 60], dtype=np.int64)
WARM_CATEGORY = np.array([1, 1, 1, 2, 2, 3], dtype=np.int64)
WARM_SHOP = np.array([7, 7, 8, 7, 9, 9], dtype=np.int64)
GENERAL = np.array([[3, 0, 0], [0, 2, 0], [1, 1, 1], [0, 0, 5], [4, 0, 3], [-1, 2, 2]], dtype=np.float32)
DIVERSITY = np.array([[1, 0], [3, 2], [0, 5], [2, 2], [4, 0], [1, 1]], dtype=np.float32)
#: cold items: 15 shares category and shop with 10 and 20; 25's (category 2, shop 8) has no warm item,
#: so category 2 alone (40, 50) places it; 35's category is unknown to the model: the mean of all
COLD = np.array([15, 25, 35], dtype=np.int64)
COLD_CATEGORY = np.array([1, 2, 5], dtype=np.int64)
COLD_SHOP = np.array([7, 8, -1], dtype=np.int64)
#: an id the catalogue does not hold
OUTSIDE = 99


def unit(rows: np.ndarray) -> np.ndarray:
    x = np.asarray(rows, dtype=np.float64)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def expected_general(scale: float) -> np.ndarray:
    """The cold items' general vectors by hand: the mean unit vector of their group, times ``scale``."""
    u = unit(GENERAL)
    return scale * np.stack([u[[0, 1]].mean(axis=0), u[[3, 4]].mean(axis=0), u.mean(axis=0)])


def expected_diversity() -> np.ndarray:
    """The cold items' diversity vectors by hand: the plain mean of their group's warm ``z``."""
    z = DIVERSITY.astype(np.float64)
    return np.stack([z[[0, 1]].mean(axis=0), z[[3, 4]].mean(axis=0), z.mean(axis=0)])


def write_model(root: Path, dataset: Path | None = None, norm_exponent: float | None = None) -> Path:
    """A saved M2GRL artifact over ``WARM`` with side views category and shop (no relations), served
    raw unless ``norm_exponent`` is given."""
    vocab = {
        "item": WARM,
        "category": np.array([1, 2, 3], dtype=np.int64),
        "shop": np.array([7, 8, 9], dtype=np.int64),
    }
    rng = np.random.default_rng(0)
    emb = {"item": GENERAL, **{v: rng.normal(size=(3, 3)).astype(np.float32) for v in ("category", "shop")}}
    artifact = M2GRLArtifact(
        views=["item", "category", "shop"], relations=[], embeddings=emb,
        context={v: np.zeros_like(e) for v, e in emb.items()}, relation_matrices={}, relational={},
        vocab=vocab, attributes={"category": WARM_CATEGORY, "shop": WARM_SHOP}, task_weights={},
        manifest=ModelManifest(
            version="cold-test",
            dataset=str(dataset) if dataset is not None else None,
            config={"norm_exponent": norm_exponent} if norm_exponent is not None else {},
        ),
    )  # fmt: skip
    return artifact.save(root)


def write_metric(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    np.save(root / "diversity.npy", DIVERSITY)
    atomic_write_json(root / "manifest.json", {"source_model": "cold-test"})
    return root


def write_dataset(
    root: Path, *, catalogue: bool = True, labels: bool = False, first_seen: np.ndarray | None = None
) -> Path:
    """A dataset folder holding (when ``catalogue``) every warm and cold item with its side attributes;
    with ``labels``, string labels for the item and category views (dense id ``i`` is ``"I<i>"`` /
    ``"C<i>"``). Its events give each warm item two training events, the first at ``first_seen`` (one
    timestamp per ``WARM`` item; default all equal, so ``recent-mean`` weighs them equally), and a test
    event of a cold item earlier than all of them (test events never count)."""
    layout = DatasetLayout(root)
    root.mkdir(parents=True, exist_ok=True)
    atomic_write_json(layout.manifest, {"format": "m2grl-dataset", "views": ["item", "category", "shop"]})
    first = np.full(len(WARM), 1000, dtype=np.int64) if first_seen is None else np.asarray(first_seen)
    events = {
        "user_id": np.zeros(2 * len(WARM) + 1, dtype=np.int64),
        "item_id": np.concatenate([WARM, WARM, COLD[:1]]),
        "timestamp": np.concatenate([first, first + 5000, [-1]]).astype(np.int64),
        "split": ["train"] * (2 * len(WARM)) + ["test"],
    }
    pq.write_table(pa.table(events), layout.events)
    if catalogue:
        items = np.concatenate([WARM, COLD])
        order = np.argsort(items)
        attributes = {
            "category": np.concatenate([WARM_CATEGORY, COLD_CATEGORY])[order],
            "shop": np.concatenate([WARM_SHOP, COLD_SHOP])[order],
        }
        write_catalogue(layout.catalogue, Catalogue(items[order], attributes))
    if labels:
        write_id_labels(layout.labels("item"), IdLabels(pa.array([f"I{i}" for i in range(100)])))
        write_id_labels(layout.labels("category"), IdLabels(pa.array([f"C{i}" for i in range(6)])))
    return root
