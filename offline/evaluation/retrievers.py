"""Turn a fitted item model into the service's retriever (``index.serving.ServingIndex``).

The harness evaluates the service's own retrieval path: vectors go through
``ServingIndex.from_vectors`` (FAISS + precomputed top-N, as served), top-N maps through
``ServingIndex.from_topn``. Cosine models are L2-normalised and served by inner product.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

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
    # Imported here, not at module top: index/serving.py is developed concurrently and the metric and
    # protocol code (and their tests) must not depend on it being importable.
    from index.inputs import norm_scaled
    from index.serving import ServingIndex

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
