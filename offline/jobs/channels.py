"""The retrieval channels built beside the embeddings (``index.channels``), from the model's training
split with the harness's own implementations, so the service and the reports share them:

- ``cooc``: the Item-CF top-N map;
- ``popular``: the training items most users reached, one list shared by every trigger (the popularity
  baseline's list);
- ``category_popular``: the training items most users reached in the trigger's own category (its value in
  the dataset's first side view), a list per category: what a user is likely to pick next among the items
  they have not seen, where the trigger's neighbours are mostly items they have.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt

from core.manifests import ModelManifest
from core.vocab import lookup
from index.inputs import ChannelInput
from offline.baselines.base import TrainData, load_train_data
from offline.baselines.in_category import in_category_map
from offline.baselines.itemcf import fit_itemcf
from offline.baselines.popularity import most_frequent, reach

#: The mix an index version serves by default when it holds the channels (the validation figures of the
#: weights are in reports/quality-research.md).
DEFAULT_MIX: dict[str, float] = {"m2grl": 0.5, "cooc": 0.5, "popular": 0.35}


def index_rows(items: npt.NDArray[np.int64], dataset_items: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """For each dataset row, its row in the index's ``items`` (-1 when the index does not hold it)."""
    items = np.asarray(items, dtype=np.int64)
    if len(items) == 0:
        raise ValueError("items: the index holds no item")
    return lookup(np.asarray(dataset_items, dtype=np.int64), items)


def cooc_channel(
    dataset_dir: Path, items: npt.NDArray[np.int64], topn: int = 200, data: TrainData | None = None
) -> ChannelInput:
    """Item-CF top-``topn`` map of ``dataset_dir``'s train split (``data`` when already read), rows and
    entries re-indexed to ``items`` (the index's item order). Items of ``items`` unknown to the dataset get
    empty rows; dataset items missing from ``items`` are dropped from the lists."""
    data = data if data is not None else load_train_data(Path(dataset_dir))
    fitted = fit_itemcf(data, topn=topn)
    assert fitted.topn_ids is not None and fitted.topn_scores is not None  # Item-CF returns a map
    items = np.asarray(items, dtype=np.int64)
    to_index = index_rows(items, data.items)
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


def popular_channel(
    dataset_dir: Path, items: npt.NDArray[np.int64], topn: int = 200, data: TrainData | None = None
) -> ChannelInput:
    """The popularity baseline's list (``offline.baselines.popularity``: the ``topn`` training items of
    ``dataset_dir`` with the most distinct users) restricted to the items of ``items``, as one shared list
    of index rows (``data``: the training split when already read); scores are reach over the largest (in
    (0, 1]: a count may exceed the float16 range the index stores scores in)."""
    data = data if data is not None else load_train_data(Path(dataset_dir))
    to_index = index_rows(items, data.items)
    held = np.flatnonzero(to_index >= 0)
    users = reach(data)
    best = held[most_frequent(users[held], min(topn, len(held)))]
    ids = np.full((1, topn), -1, dtype=np.int32)
    scores = np.full((1, topn), -np.inf, dtype=np.float32)
    ids[0, : len(best)] = to_index[best]
    if len(best):
        scores[0, : len(best)] = users[best] / max(int(users[best[0]]), 1)
    return ChannelInput(ids, scores, f"popularity by reach:{Path(dataset_dir).resolve()}")


def category_popular_channel(
    dataset_dir: Path, items: npt.NDArray[np.int64], topn: int = 200, data: TrainData | None = None
) -> ChannelInput | None:
    """Per trigger, the ``topn`` training items of its category with the most distinct users (ties by
    vocabulary row, as the popular list), the trigger left out, as a map of index rows over ``items``:
    the own-category part of ``offline.baselines.in_category.in_category_map`` ranked by reach, over the
    dataset items the index holds. The category is the item's value in ``dataset_dir``'s first side view;
    items without one, and items of ``items`` unknown to the dataset, get empty rows. None when the
    dataset has no side view. Scores are reach over the category's largest."""
    data = data if data is not None else load_train_data(Path(dataset_dir))
    if not data.attributes:
        return None
    to_index = index_rows(items, data.items)
    held = np.flatnonzero(to_index >= 0)  # dataset rows the index holds
    categories = next(iter(data.attributes.values()))[held]
    users = reach(data)[held]
    ids = np.full((len(items), topn), -1, dtype=np.int32)
    scores = np.full((len(items), topn), -np.inf, dtype=np.float32)
    source = f"popularity by reach in category:{Path(dataset_dir).resolve()}"
    if len(held) == 0:
        return ChannelInput(ids, scores, source)
    # rows and entries are positions in ``held``; the own category comes first, then the other categories
    ranked = in_category_map(categories, -users, topn).topn_ids
    assert ranked is not None  # in_category_map returns a map
    _, group = np.unique(categories, return_inverse=True)
    largest = np.zeros(group.max() + 1, dtype=np.int64)
    np.maximum.at(largest, group, users)
    width = ranked.shape[1]
    for start in range(0, len(held), _BLOCK):  # blocks bound the working memory on large catalogues
        rows = np.arange(start, min(start + _BLOCK, len(held)))
        lists = np.maximum(ranked[rows], 0)
        own = (
            (ranked[rows] >= 0)
            & (categories[lists] == categories[rows, None])
            & (categories[rows, None] >= 0)
        )
        ids[to_index[held[rows]], :width] = np.where(own, to_index[held[lists]], -1)
        share = users[lists] / np.maximum(largest[group[rows]], 1)[:, None]
        scores[to_index[held[rows]], :width] = np.where(own, share, -np.inf)
    return ChannelInput(ids, scores, source)


#: Rows of the category channel finished at once.
_BLOCK = 65_536


def dataset_channels(
    dataset_dir: Path, items: npt.NDArray[np.int64], topn: int = 200
) -> dict[str, ChannelInput]:
    """Every channel built beside the embeddings, from one read of the training split (the category
    channel only when the dataset has a side view)."""
    data = load_train_data(Path(dataset_dir))
    channels = {
        "cooc": cooc_channel(dataset_dir, items, topn, data),
        "popular": popular_channel(dataset_dir, items, topn, data),
    }
    category = category_popular_channel(dataset_dir, items, topn, data)
    if category is not None:
        channels["category_popular"] = category
    return channels


def model_dataset(model_dir: Path) -> Path | None:
    """The dataset folder a model was trained on, as its manifest records it (None when it does not)."""
    try:
        return ModelManifest.read(model_dir).dataset_dir
    except FileNotFoundError:
        return None


def channels_builder(
    model_dir: Path, dataset_dir: Path | None = None, topn: int = 200
) -> Callable[[npt.NDArray[np.int64]], dict[str, ChannelInput]]:
    """The ``channels`` argument of ``index.build.build_index`` that adds the channels of the dataset the
    model was trained on (or ``dataset_dir``), resolved when the builder calls it: after the model folder
    was validated. Raises ``FileNotFoundError`` naming the option to give."""

    def build(items: npt.NDArray[np.int64]) -> dict[str, ChannelInput]:
        source = Path(dataset_dir) if dataset_dir is not None else model_dataset(model_dir)
        if source is None or not source.is_dir():
            raise FileNotFoundError(
                f"--dataset: {source or 'the model manifest names no dataset'} is not a folder; give the "
                "training dataset, or --no-channels to build without the co-occurrence and popularity channels"
            )
        return dataset_channels(source, items, topn)

    return build
