"""The retrieval channels built beside the embeddings (``index.channels``): today ``cooc``, the
harness's Item-CF top-N map of the same training split, so the service and the reports use one
implementation of it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt

from core.manifests import ModelManifest
from index.inputs import ChannelInput
from offline.baselines.base import load_train_data
from offline.baselines.itemcf import fit_itemcf

#: The mix an index version serves by default when it holds the co-occurrence channel (equal weights:
#: the validation figures are in reports/quality-research.md).
COOC_DEFAULT_MIX: dict[str, float] = {"m2grl": 0.5, "cooc": 0.5}


def cooc_channel(dataset_dir: Path, items: npt.NDArray[np.int64], topn: int = 200) -> ChannelInput:
    """Item-CF top-``topn`` map of ``dataset_dir``'s train split, rows and entries re-indexed to ``items``
    (the index's item order). Items of ``items`` unknown to the dataset get empty rows; dataset items
    missing from ``items`` are dropped from the lists."""
    data = load_train_data(Path(dataset_dir))
    fitted = fit_itemcf(data, topn=topn)
    assert fitted.topn_ids is not None and fitted.topn_scores is not None  # Item-CF returns a map
    items = np.asarray(items, dtype=np.int64)
    order = np.argsort(items)
    # dataset row -> index row (-1 when the index does not hold that item)
    if len(items) == 0:
        raise ValueError("items: the index holds no item")
    cand = order[np.minimum(np.searchsorted(items, data.items, sorter=order), len(items) - 1)]
    to_index = np.where(items[cand] == data.items, cand, -1)
    # index row -> dataset row (-1 when the dataset does not know the item)
    back = np.full(len(items), -1, dtype=np.int64)
    back[to_index[to_index >= 0]] = np.flatnonzero(to_index >= 0)
    src_ids = fitted.topn_ids.astype(np.int64)
    mapped = np.where(src_ids >= 0, to_index[np.maximum(src_ids, 0)], -1)
    ids = np.full((len(items), topn), -1, dtype=np.int64)
    scores = np.full((len(items), topn), -np.inf, dtype=np.float32)
    known = back >= 0
    ids[known], scores[known] = mapped[back[known]], fitted.topn_scores[back[known]]
    # dropped entries leave holes: move the kept ones left, keeping their order
    hole = ids < 0
    shift = np.argsort(hole, axis=1, kind="stable")
    ids = np.take_along_axis(ids, shift, axis=1)
    scores = np.where(ids >= 0, np.take_along_axis(scores, shift, axis=1), -np.inf).astype(np.float32)
    return ChannelInput(ids.astype(np.int32), scores, f"itemcf:{Path(dataset_dir).resolve()}")


def model_dataset(model_dir: Path) -> Path | None:
    """The dataset folder a model was trained on, as its manifest records it (None when it does not)."""
    try:
        return ModelManifest.read(model_dir).dataset_dir
    except FileNotFoundError:
        return None


def cooc_builder(
    model_dir: Path, dataset_dir: Path | None = None, topn: int = 200
) -> Callable[[npt.NDArray[np.int64]], dict[str, ChannelInput]]:
    """The ``channels`` argument of ``index.build.build_index`` that adds the ``cooc`` channel of the
    dataset the model was trained on (or ``dataset_dir``), resolved when the builder calls it: after
    the model folder was validated. Raises ``FileNotFoundError`` naming the option to give."""

    def build(items: npt.NDArray[np.int64]) -> dict[str, ChannelInput]:
        source = Path(dataset_dir) if dataset_dir is not None else model_dataset(model_dir)
        if source is None or not source.is_dir():
            raise FileNotFoundError(
                f"--dataset: {source or 'the model manifest names no dataset'} is not a folder; give the "
                "training dataset, or --no-cooc to build without the co-occurrence channel"
            )
        return {"cooc": cooc_channel(source, items, topn)}

    return build
