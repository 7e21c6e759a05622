"""Warm start: begin a daily training from yesterday's model instead of random rows.

Rows of ids known to the previous model (items, categories, shops...) are copied, input and output
tables alike; the alignment matrices ``W`` and the learned task variances are copied when their
shapes match (the offsets ``b`` are not saved with a model and restart). A new item row starts from its side views: the mean of the copied rows of
the items sharing its side attribute (the first relation whose attribute has copied items), so a new
item begins where its category's items are; a new row without such a neighbour keeps its random
start. Optimiser state is not carried over: the trainer builds a fresh optimiser for the run.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from core.types import IntArray
from model.artifact import M2GRLArtifact
from model.m2grl import M2GRL
from model.optim import SparseEmbedding


def _weight(tables: torch.nn.ModuleDict, view: str) -> torch.Tensor:
    table = tables[view]
    assert isinstance(table, SparseEmbedding)  # the model's construction, not an input check
    return table.weight


def matching_rows(new_ids: IntArray, old_ids: IntArray) -> tuple[IntArray, IntArray]:
    """``(new_rows, old_rows)``: the rows of the ids present in both vocabularies."""
    common, new_rows, old_rows = np.intersect1d(new_ids, old_ids, assume_unique=True, return_indices=True)
    del common
    return new_rows.astype(np.int64), old_rows.astype(np.int64)


def side_view_means(
    vectors: npt.NDArray[np.float32], known: npt.NDArray[np.bool_], link: IntArray, n_values: int
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.bool_]]:
    """Per side-attribute row, the mean of ``vectors`` over the ``known`` items linked to it, and
    whether that attribute has any known item (``link``: item row -> attribute row, ``-1`` unknown)."""
    use = known & (link >= 0)
    sums = np.zeros((n_values, vectors.shape[1]), dtype=np.float64)
    np.add.at(sums, link[use], vectors[use])
    counts = np.bincount(link[use], minlength=n_values)
    has = counts > 0
    means = np.zeros_like(sums, dtype=np.float32)
    means[has] = (sums[has] / counts[has, None]).astype(np.float32)
    return means, has


@torch.no_grad()
def warm_start(
    model: M2GRL,
    previous: M2GRLArtifact,
    vocab: Mapping[str, npt.NDArray[np.integer[Any]]],
    links: Mapping[str, npt.NDArray[np.integer[Any]]],
) -> dict[str, dict[str, int]]:
    """Initialise ``model`` from ``previous`` (see the module docstring) in place.

    ``vocab``: view -> the new model's original ids per row; ``links``: relation name -> item row ->
    attribute row (the dataset's link tables). Returns, per view, how many rows were ``copied``,
    ``placed`` from side views and left ``fresh``. Raises ``ValueError`` when the dimensions differ.
    """
    if previous.embeddings and model.dim != next(iter(previous.embeddings.values())).shape[1]:
        old_dim = next(iter(previous.embeddings.values())).shape[1]
        raise ValueError(f"init-from: the previous model has dim {old_dim}, this config {model.dim}")
    counts: dict[str, dict[str, int]] = {}
    copied_mask: dict[str, npt.NDArray[np.bool_]] = {}
    for view in model.views:
        table_in, table_out = _weight(model.inputs, view), _weight(model.outputs, view)
        n = int(table_in.shape[0])
        known = np.zeros(n, dtype=bool)
        if view in previous.embeddings:
            new_rows, old_rows = matching_rows(np.asarray(vocab[view]), np.asarray(previous.vocab[view]))
            index = torch.as_tensor(new_rows)
            table_in[index] = torch.as_tensor(np.asarray(previous.embeddings[view])[old_rows])
            table_out[index] = torch.as_tensor(np.asarray(previous.context[view])[old_rows])
            known[new_rows] = True
        copied_mask[view] = known
        counts[view] = {"copied": int(known.sum()), "placed": 0, "fresh": int(n - known.sum())}
    item = model.views[0]
    item_in = _weight(model.inputs, item)
    placed = copied_mask[item].copy()
    vectors = item_in.cpu().numpy()
    for relation in model.relations:
        _, other = model.relation_views[relation]
        link = np.asarray(links[relation], dtype=np.int64)
        means, has = side_view_means(
            vectors, copied_mask[item], link, int(_weight(model.inputs, other).shape[0])
        )
        target = ~placed & (link >= 0) & has[np.maximum(link, 0)]
        if target.any():
            targets = np.flatnonzero(target)
            item_in[torch.as_tensor(targets)] = torch.as_tensor(means[link[targets]])
            placed[targets] = True
            counts[item]["placed"] += len(targets)
    counts[item]["fresh"] -= counts[item]["placed"]
    for relation in model.relations:
        old = previous.relation_matrices.get(relation)
        if old is not None and tuple(old.shape) == tuple(model.W[relation].shape):
            model.W[relation].copy_(torch.as_tensor(np.asarray(old)))
    sigma = getattr(model.weighting, "log_sigma2_param", None)
    if isinstance(sigma, torch.nn.Parameter):
        for i, task in enumerate(model.weighting.tasks):
            state = previous.task_weights.get(task)
            if state is not None and "log_sigma2" in state:
                sigma[i] = float(state["log_sigma2"])
    return counts
