"""Turn a fitted item model into the service's retriever (``index.serving.ServingIndex``).

The harness evaluates the service's own retrieval path: vectors go through
``ServingIndex.from_vectors`` (FAISS + precomputed top-N, as served), top-N maps through
``ServingIndex.from_topn``. Cosine models are L2-normalised and served by inner product.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from index.inputs import ChannelInput, norm_scaled
from index.serving import ServingIndex
from offline.baselines.base import ItemModel
from offline.evaluation.protocol import Retriever

#: ``(items, attributes, model, topn) -> Retriever``; swapped in tests.
RetrieverFactory = Callable[
    [npt.NDArray[np.int64], dict[str, npt.NDArray[np.int64]], ItemModel, int], Retriever
]


def serving_retriever(
    items: npt.NDArray[np.int64], attributes: dict[str, npt.NDArray[np.int64]], model: ItemModel, topn: int
) -> Retriever:
    """Build a ``ServingIndex`` in memory for ``model`` (mode ``"general"``) with ``topn`` neighbours per item."""
    if model.topn_ids is not None and model.topn_scores is not None:
        return ServingIndex.from_topn(
            items, attributes, {"general": model.topn_ids}, {"general": model.topn_scores}
        )
    vectors = np.ascontiguousarray(model.vectors, dtype=np.float32)
    metric = model.metric
    if metric == "cosine":
        vectors, metric = norm_scaled(vectors, 1.0), "ip"
    return ServingIndex.from_vectors(
        items, attributes, vectors={"general": vectors}, metrics={"general": metric}, topn=topn
    )


class _MixRetriever:
    """The harness's view of a served variant: every lookup goes through the service's own merge
    (``ServingIndex.batch_neighbours`` with the variant's ``mix``)."""

    def __init__(self, index: Any, mix: Mapping[str, float]) -> None:
        self.index = index
        self.mix = dict(mix)

    def batch_neighbours(
        self, item_ids: npt.NDArray[np.int64], mode: str, k: int
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        out: tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]] = self.index.batch_neighbours(
            item_ids, mode, k, mix=self.mix
        )
        return out


def mixed_retrievers(
    items: npt.NDArray[np.int64],
    attributes: dict[str, npt.NDArray[np.int64]],
    model: ItemModel,
    channels: Mapping[str, ChannelInput],
    mixes: Sequence[Mapping[str, float]],
    topn: int,
) -> list[Retriever]:
    """Variants' served general modes: ``model``'s vectors as the ``m2grl`` channel (as the index builds
    it) beside the map-only ``channels`` (``offline.jobs.channels``), merged by each of ``mixes``; one
    index serves them all."""
    assert model.vectors is not None and model.metric == "ip"  # served M2GRL vectors, already scaled
    index = ServingIndex.from_vectors(
        items, attributes, vectors={"general": model.vectors}, metrics={"general": "ip"}, topn=topn,
        channel_maps={name: (c.topn_ids, c.topn_scores) for name, c in channels.items()},
    )  # fmt: skip
    return [_MixRetriever(index, mix) for mix in mixes]


def mixed_retriever(
    items: npt.NDArray[np.int64],
    attributes: dict[str, npt.NDArray[np.int64]],
    model: ItemModel,
    channels: Mapping[str, ChannelInput],
    mix: Mapping[str, float],
    topn: int,
) -> Retriever:
    """One variant's served general mode (:func:`mixed_retrievers`)."""
    return mixed_retrievers(items, attributes, model, channels, [mix], topn)[0]
