"""The cold items of an index version: the catalogue items (``core.catalogue``) a model has no row for,
placed from their side views so the service answers them from day zero.

- General mode: the item-space vector of the rule (``model.cold``; ``recent-mean`` by default: the mean
  of the group's unit vectors, each weighted by how recently its item first appeared in the training
  events, ``model.cold.recency_weights``; ``group-mean`` weighs them equally) times ``scale``. It is not
  renormalised: against the default unit-length warm vectors (norm exponent 1) its length, at most 1,
  says how much its group agrees, so a loose group (the all-items fallback above all) does not become a
  hub near every trigger; and ``scale`` below 1 ranks a cold item below a warm one of equal direction,
  since its placement is a guess.
- Diversity mode: the metric model's ``z`` is linear in an item's instance-view vector *and* its
  relational item-category vector, which a cold item lacks, so it is not a function of the placed item
  vector; the cold item takes the group mean of the warm items' ``z`` (same groups and weights as the
  general mode, unnormalised: lengths mean distances in that L2 space), which is also the metric's
  transform of the group means of both inputs. No scale there: shrinking a point of an L2 space moves
  it, not below.

``build-index`` calls :func:`cold_builder`'s function once the model folder is validated
(``index.build.build_index``'s ``cold``); the evaluation harness can call :func:`cold_input` directly.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np

from core.catalogue import read_catalogue
from core.events import train_first_seen
from core.id_labels import read_id_labels
from core.layout import DatasetLayout
from core.types import Mode
from index.explorer import catalogue_dataset
from index.inputs import BuildInputs, ColdInput
from model.artifact import M2GRLArtifact
from model.cold import model_inputs, place_cold, recency_weights

log = logging.getLogger(__name__)

#: The rules ``build-index --cold-rule`` accepts (``none``: the model's items only).
INDEX_COLD_RULES = ("recent-mean", "group-mean", "none")
#: Defaults of ``build-index --cold-scale`` and ``--cold-decay`` (chosen on the validation splits:
#: reports/cold-items.md).
DEFAULT_COLD_SCALE = 0.9
DEFAULT_COLD_DECAY = 0.5


def check_cold_options(rule: str, scale: float, decay: float = DEFAULT_COLD_DECAY) -> None:
    """Raise ``ValueError`` naming the option for an unknown rule, a scale outside ``(0, 1]`` or a decay
    that is not a positive number."""
    if rule not in INDEX_COLD_RULES:
        raise ValueError(f"--cold-rule: {rule!r} is not one of {list(INDEX_COLD_RULES)}")
    if not math.isfinite(scale) or not 0 < scale <= 1:
        raise ValueError(f"--cold-scale: must be in (0, 1], got {scale}")
    if not math.isfinite(decay) or decay <= 0:
        raise ValueError(f"--cold-decay: must be a number > 0, got {decay}")


def warm_weights(rule: str, layout: DatasetLayout, items: np.ndarray, decay: float) -> np.ndarray | None:
    """The rule's per-warm-item weights: ``recent-mean``'s recency of each item's first training event,
    None for the unweighted rules."""
    if rule != "recent-mean":
        return None
    if not layout.events.exists():
        raise ValueError(
            f"{layout.events} is missing: recent-mean dates items by it (or use --cold-rule group-mean)"
        )
    return recency_weights(train_first_seen(layout.events, items), decay)


def cold_input(
    model_dir: Path,
    dataset_dir: Path,
    inputs: BuildInputs,
    *,
    rule: str = "recent-mean",
    scale: float = DEFAULT_COLD_SCALE,
    decay: float = DEFAULT_COLD_DECAY,
) -> ColdInput | None:
    """The catalogue items of ``dataset_dir`` without a row in ``inputs`` (the model's items, as
    ``index.inputs.read_inputs`` read them from ``model_dir``), placed as the module docstring says,
    with their catalogue side attributes for the version's attribute views. None when the dataset has no
    catalogue or every catalogue item is warm. Raises ``ValueError`` on a bad option, a catalogue that
    does not fit (an item or attribute id without a label in a view with string ids) or a broken model."""
    check_cold_options(rule, scale, decay)
    if rule == "none":
        return None
    layout = DatasetLayout(Path(dataset_dir))
    catalogue = read_catalogue(layout.catalogue)
    if catalogue is None:
        log.info("%s has no catalogue: no cold item", layout.root)
        return None
    items = np.setdiff1d(catalogue.items, inputs.items)
    if len(items) == 0:
        return None
    _check_labelled(layout, inputs.item_view, items)
    attributes: dict[str, np.ndarray] = {}
    for view in inputs.attributes:
        values = (
            catalogue.attributes_of(view, items) if view in catalogue.attributes else np.full(len(items), -1)
        )
        _check_labelled(layout, view, values[values >= 0])
        attributes[view] = np.asarray(values, dtype=np.int64)

    model = M2GRLArtifact.load(Path(model_dir))
    if not np.array_equal(np.asarray(model.vocab[model.views[0]], dtype=np.int64), inputs.items):
        raise ValueError(f"{model_dir}: the model's item vocabulary differs from the index inputs")
    side = {v: catalogue.attributes_of(v, items) for v in catalogue.views}
    placing = model_inputs(model, side, len(items), warm_weights(rule, layout, inputs.items, decay))
    placed = place_cold(rule, placing)
    vectors = {Mode.GENERAL.value: scale * placed.vectors}
    diversity = inputs.modes.get(Mode.DIVERSITY.value)
    if diversity is not None:
        z = dataclasses.replace(placing, item_vectors=diversity.vectors)
        vectors[Mode.DIVERSITY.value] = place_cold(rule, z, normalise=False).vectors
    matched = np.bincount(placed.matched, minlength=len(placing.views) + 1).tolist()
    log.info(
        "%d cold items placed by %s (side views matched, 0..%d: %s)",
        len(items),
        rule,
        len(placing.views),
        matched,
    )
    details = {
        "rule": rule,
        "scale": float(scale),
        **({"decay": float(decay)} if rule == "recent-mean" else {}),
        "views": placing.views,
        "matched": matched,
        "dataset": str(layout.root.resolve()),
    }
    return ColdInput(
        items.astype(np.int64),
        attributes,
        {m: np.asarray(v, dtype=np.float32) for m, v in vectors.items()},
        details,
    )


def _check_labelled(layout: DatasetLayout, view: str, ids: np.ndarray) -> None:
    """Raise ``ValueError`` unless every id of a view with string ids has a label (the service could not
    name it)."""
    labels = read_id_labels(layout.labels(view))
    if labels is not None and len(ids) and int(ids.max()) >= len(labels):
        raise ValueError(
            f"{layout.catalogue}: {view} ids outside the {len(labels)} labels of {layout.labels(view)} "
            "(catalogue and labels from different prepares?)"
        )


def cold_builder(
    model_dir: Path,
    dataset_dir: Path | None = None,
    *,
    rule: str = "recent-mean",
    scale: float = DEFAULT_COLD_SCALE,
    decay: float = DEFAULT_COLD_DECAY,
) -> Callable[[BuildInputs], ColdInput | None]:
    """The ``cold`` argument of ``index.build.build_index``: the cold items of the dataset the model was
    trained on (or ``dataset_dir``), placed when the builder calls it. A model whose dataset cannot be
    found, or a dataset without catalogue, builds without cold items. Raises ``ValueError`` here for a
    bad option."""
    check_cold_options(rule, scale, decay)

    def build(inputs: BuildInputs) -> ColdInput | None:
        source = catalogue_dataset(Path(model_dir), dataset_dir)
        if source is None:
            log.info("no dataset folder for %s: no cold item", model_dir)
            return None
        return cold_input(model_dir, source, inputs, rule=rule, scale=scale, decay=decay)

    return build
