"""Placing new (cold) items in the instance (item) space from their side views.

An item without behaviour has no trained row, but its side attributes (category, shop) do, and the warm
items sharing them show where such items sit. With ``align_item_grad=False`` the side views are trained
into the item space (section 3.4), so both rules below read the item space as the item view left it:

- ``group-mean``: the mean of the L2-normalised vectors of the warm items sharing every side attribute of
  the item (category and shop), falling back to fewer views (category alone) and then to the mean of all
  warm items. Its length (at most 1) says how much the group agrees; served by cosine it is a direction.
- ``recent-mean``: the same groups, each warm item weighted by how recently it first appeared
  (:func:`recency_weights`): a new item is more like the group's recent arrivals than its old stock.
- ``side-ridge``: a linear map from the concatenated side-view embeddings to the (L2-normalised) item
  vectors, fitted in closed form by ridge regression on the warm items (with an unpenalised intercept).

Side attributes come as *rows of each side view's vocabulary* (``-1`` unknown: the value is missing or was
never seen in training). Pure numpy, no I/O (:func:`model_inputs` reads an already loaded model); a
registry (:data:`COLD_RULES`) names the rules.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from core.types import IntArray
from core.vocab import lookup
from model.artifact import M2GRLArtifact

Matrix = npt.NDArray[np.float32]


@dataclass(frozen=True)
class ColdInputs:
    """What the rules read.

    - ``item_vectors``: float ``[n_warm, d]`` trained instance-view vectors of the warm items.
    - ``warm_side``: side view -> int ``[n_warm]`` row of each warm item in that view's vocabulary
      (``-1`` unknown). The mapping's order is the fallback order of ``group-mean`` (category first).
    - ``cold_side``: the same views -> int ``[n_cold]`` rows of the items to place.
    - ``side_vectors``: side view -> float ``[|vocab|, d_view]`` trained side-view embeddings
      (``side-ridge`` only).
    - ``cold_count``: how many items to place; needed only without side views (a single-view model),
      where no row array says it.
    - ``warm_weights``: float ``[n_warm]`` weight of each warm item in a group (``recent-mean`` only;
      :func:`recency_weights`), positive.
    """

    item_vectors: npt.NDArray[np.floating[Any]]
    warm_side: Mapping[str, npt.NDArray[np.integer[Any]]]
    cold_side: Mapping[str, npt.NDArray[np.integer[Any]]]
    side_vectors: Mapping[str, npt.NDArray[np.floating[Any]]] = field(default_factory=dict)
    cold_count: int | None = None
    warm_weights: npt.NDArray[np.floating[Any]] | None = None

    def __post_init__(self) -> None:
        if self.item_vectors.ndim != 2 or len(self.item_vectors) == 0:
            raise ValueError(
                f"item_vectors must be a non-empty [n_warm, d] matrix, got {self.item_vectors.shape}"
            )
        if list(self.warm_side) != list(self.cold_side):
            raise ValueError(
                f"warm_side views {list(self.warm_side)} differ from cold_side {list(self.cold_side)}"
            )
        n_cold = {len(rows) for rows in self.cold_side.values()}
        if self.cold_count is not None:
            n_cold.add(self.cold_count)
        if len(n_cold) > 1:
            raise ValueError(
                f"cold_side: every view needs one row per cold item (cold_count {self.cold_count}), "
                f"got lengths {sorted(n_cold)}"
            )
        for view, rows in self.warm_side.items():
            if rows.shape != (len(self.item_vectors),):
                raise ValueError(
                    f"warm_side[{view!r}] must have one row per warm item ({len(self.item_vectors)}), "
                    f"got {rows.shape}"
                )
        w = self.warm_weights
        if w is not None and (
            w.shape != (len(self.item_vectors),) or not bool(np.all(np.isfinite(w) & (w > 0)))
        ):
            raise ValueError(
                f"warm_weights must hold one finite positive weight per warm item ({len(self.item_vectors)}), "
                f"got shape {w.shape}"
            )

    @property
    def views(self) -> list[str]:
        return list(self.warm_side)

    @property
    def n_cold(self) -> int:
        if self.cold_side:
            return len(next(iter(self.cold_side.values())))
        return self.cold_count or 0


@dataclass(frozen=True)
class Placement:
    """Cold items placed in the item space: float32 ``vectors [n_cold, d]`` and, per item, ``matched``:
    how many side views placed it (``group-mean``: the leading views of its group, 0 = the global mean;
    ``side-ridge``: the views whose row is known, the others imputed)."""

    vectors: Matrix
    matched: IntArray


def unit_rows(vectors: npt.NDArray[np.floating[Any]]) -> npt.NDArray[np.float64]:
    """Rows divided by their L2 length (all-zero rows stay zero), in float64."""
    x = np.asarray(vectors, dtype=np.float64)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


def _stacked(side: Mapping[str, npt.NDArray[np.integer[Any]]], views: list[str], n: int) -> IntArray:
    if not views:
        return np.zeros((n, 0), dtype=np.int64)
    return np.stack([np.asarray(side[v], dtype=np.int64) for v in views], axis=1)


def recency_weights(first_seen: npt.ArrayLike, decay: float) -> npt.NDArray[np.float64]:
    """``exp(-age / decay)`` per warm item, ``age`` the share of the warm items that first appeared
    strictly after it (0 for the newest, nearly 1 for the oldest; equal dates, equal weights). A share of
    the items, not of the time span, so one ``decay`` fits a log whatever its time unit and however
    unevenly its items arrived (a first day holding the whole back catalogue, say)."""
    if not np.isfinite(decay) or decay <= 0:
        raise ValueError(f"decay must be a finite number > 0, got {decay}")
    t = np.asarray(first_seen, dtype=np.float64)
    later = len(t) - np.searchsorted(np.sort(t), t, side="right")
    return np.exp(-later / max(len(t), 1) / decay)


def _group_means(
    vectors: npt.NDArray[np.float64],
    warm_keys: IntArray,
    cold_keys: IntArray,
    weights: npt.NDArray[np.float64],
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    """Per cold row, the ``weights``-weighted mean of the warm vectors with the same key row, and whether
    it has any (a key with an unknown ``-1`` part matches nothing)."""
    n_cold = len(cold_keys)
    means = np.zeros((n_cold, vectors.shape[1]), dtype=np.float64)
    warm_ok = (warm_keys >= 0).all(axis=1)
    cold_ok = (cold_keys >= 0).all(axis=1)
    if not warm_ok.any() or not cold_ok.any():
        return means, np.zeros(n_cold, dtype=bool)
    keys = np.concatenate([warm_keys[warm_ok], cold_keys[cold_ok]])
    _, inverse = np.unique(keys, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    n_groups = int(inverse.max()) + 1
    warm_group, cold_group = inverse[: int(warm_ok.sum())], inverse[int(warm_ok.sum()) :]
    sums = np.zeros((n_groups, vectors.shape[1]), dtype=np.float64)
    np.add.at(sums, warm_group, vectors[warm_ok] * weights[warm_ok, None])
    totals = np.bincount(warm_group, weights=weights[warm_ok], minlength=n_groups)
    found = np.zeros(n_cold, dtype=bool)
    has = totals[cold_group] > 0
    rows = np.flatnonzero(cold_ok)[has]
    means[rows] = sums[cold_group[has]] / totals[cold_group[has], None]
    found[rows] = True
    return means, found


def group_mean_rule(inputs: ColdInputs, *, normalise: bool = True) -> Placement:
    """Rule ``group-mean`` (see the module docstring): mean unit vector of the warm items sharing the
    first ``L`` side views, for ``L`` from all views down to 0 (every warm item), the first non-empty.
    ``normalise=False`` averages the vectors as they are, for spaces whose lengths mean something (the
    L2 diversity space)."""
    return _weighted_group_mean(inputs, np.ones(len(inputs.item_vectors)), normalise)


def recent_mean_rule(inputs: ColdInputs, *, normalise: bool = True) -> Placement:
    """Rule ``recent-mean``: :func:`group_mean_rule` with each warm item weighted by
    ``inputs.warm_weights`` (:func:`recency_weights`); raises ``ValueError`` without them."""
    if inputs.warm_weights is None:
        raise ValueError(
            "recent-mean needs warm_weights (recency_weights of the warm items' first appearance)"
        )
    return _weighted_group_mean(inputs, np.asarray(inputs.warm_weights, dtype=np.float64), normalise)


def _weighted_group_mean(inputs: ColdInputs, weights: npt.NDArray[np.float64], normalise: bool) -> Placement:
    unit = unit_rows(inputs.item_vectors) if normalise else np.asarray(inputs.item_vectors, dtype=np.float64)
    views, n_cold = inputs.views, inputs.n_cold
    out = np.zeros((n_cold, unit.shape[1]), dtype=np.float64)
    matched = np.full(n_cold, -1, dtype=np.int64)
    for level in range(len(views), 0, -1):
        todo = matched < 0
        if not todo.any():
            break
        warm_keys = _stacked(inputs.warm_side, views[:level], len(unit))
        cold_keys = _stacked(inputs.cold_side, views[:level], n_cold)[todo]
        means, found = _group_means(unit, warm_keys, cold_keys, weights)
        rows = np.flatnonzero(todo)[found]
        out[rows], matched[rows] = means[found], level
    rest = matched < 0
    out[rest], matched[rest] = weights @ unit / weights.sum(), 0
    return Placement(out.astype(np.float32), matched)


@dataclass(frozen=True)
class SideRidge:
    """A fitted ``side-ridge`` map: ``y = (x - x_mean) @ weights + y_mean`` where ``x`` concatenates the
    item's side-view embeddings (in ``views`` order; an unknown row is replaced by ``fill[view]``, the mean
    embedding of the warm items' known rows, so it adds nothing beyond the intercept)."""

    views: list[str]
    fill: dict[str, npt.NDArray[np.float64]]
    x_mean: npt.NDArray[np.float64]
    y_mean: npt.NDArray[np.float64]
    weights: npt.NDArray[np.float64]

    def features(
        self, side: Mapping[str, npt.NDArray[np.integer[Any]]], side_vectors: Mapping[str, npt.ArrayLike]
    ) -> npt.NDArray[np.float64]:
        """``[n, sum d_view]`` concatenated side-view embeddings of items given by their side rows."""
        blocks = []
        for view in self.views:
            table = np.asarray(side_vectors[view], dtype=np.float64)
            rows = np.asarray(side[view], dtype=np.int64)
            if len(rows) and int(rows.max()) >= len(table):
                raise ValueError(f"side[{view!r}]: row {int(rows.max())} outside its {len(table)} embeddings")
            known = rows >= 0
            block = np.repeat(self.fill[view][None, :], len(rows), axis=0)
            block[known] = table[rows[known]]
            blocks.append(block)
        return np.concatenate(blocks, axis=1) if blocks else np.zeros((0, 0))

    def predict(
        self, side: Mapping[str, npt.NDArray[np.integer[Any]]], side_vectors: Mapping[str, npt.ArrayLike]
    ) -> npt.NDArray[np.float64]:
        """Item-space vectors ``[n, d]`` of items given by their side rows."""
        return (self.features(side, side_vectors) - self.x_mean) @ self.weights + self.y_mean


def fit_side_ridge(inputs: ColdInputs, *, l2: float = 1.0, normalise: bool = True) -> SideRidge:
    """Fit the ``side-ridge`` map on the warm items: ``W = (Xc^T Xc + l2 I)^-1 Xc^T Yc`` with ``Xc``,
    ``Yc`` centred (so the intercept is not penalised); ``Y`` are unit rows when ``normalise``.

    ``l2 = 0`` is least squares (minimum-norm solution when ``Xc`` is rank deficient). Raises
    ``ValueError`` on a negative ``l2``, no side view, or a side view missing from ``side_vectors``.
    """
    if not np.isfinite(l2) or l2 < 0:
        raise ValueError(f"l2 must be a finite number >= 0, got {l2}")
    if not inputs.views:
        raise ValueError("side-ridge needs at least one side view")
    missing = [v for v in inputs.views if v not in inputs.side_vectors]
    if missing:
        raise ValueError(f"side_vectors lacks the views {missing}")
    fill = {}
    for view in inputs.views:
        table = np.asarray(inputs.side_vectors[view], dtype=np.float64)
        rows = np.asarray(inputs.warm_side[view], dtype=np.int64)
        known = rows[rows >= 0]
        fill[view] = table[known].mean(axis=0) if len(known) else np.zeros(table.shape[1])
    shell = SideRidge(inputs.views, fill, np.zeros(0), np.zeros(0), np.zeros((0, 0)))
    x = shell.features(inputs.warm_side, inputs.side_vectors)
    y = unit_rows(inputs.item_vectors) if normalise else np.asarray(inputs.item_vectors, dtype=np.float64)
    x_mean, y_mean = x.mean(axis=0), y.mean(axis=0)
    xc, yc = x - x_mean, y - y_mean
    if l2 == 0:
        weights = np.linalg.lstsq(xc, yc, rcond=None)[0]
    else:
        weights = np.linalg.solve(xc.T @ xc + l2 * np.eye(xc.shape[1]), xc.T @ yc)
    return SideRidge(inputs.views, fill, x_mean, y_mean, weights)


def side_ridge_rule(inputs: ColdInputs, *, l2: float = 1.0, normalise: bool = True) -> Placement:
    """Rule ``side-ridge`` (see :func:`fit_side_ridge`) applied to the cold items."""
    ridge = fit_side_ridge(inputs, l2=l2, normalise=normalise)
    vectors = ridge.predict(inputs.cold_side, inputs.side_vectors).astype(np.float32)
    known = _stacked(inputs.cold_side, inputs.views, inputs.n_cold) >= 0
    return Placement(vectors, known.sum(axis=1).astype(np.int64))


def _rows(ids: npt.ArrayLike, vocab: npt.ArrayLike) -> IntArray:
    """Vocabulary rows (``core.vocab.lookup``) of array-likes; ``-1`` (unknown) maps to ``-1``."""
    return lookup(np.asarray(ids, dtype=np.int64), np.asarray(vocab, dtype=np.int64))


def model_inputs(
    model: M2GRLArtifact,
    cold_attributes: Mapping[str, npt.ArrayLike],
    n_cold: int | None = None,
    warm_weights: npt.NDArray[np.floating[Any]] | None = None,
) -> ColdInputs:
    """The rules' inputs from a trained model: its item rows are the warm items (side rows from the
    model's ``attributes``), its side views the features, in the model's view order. ``cold_attributes``:
    side view -> original ids ``[n_cold]`` of the items to place (``-1`` unknown); a side view of the
    model missing there counts as unknown for every cold item. ``n_cold``: the number of items to place,
    required when ``cold_attributes`` is empty (a catalogue without side attributes). ``warm_weights``:
    one per model item row (``recent-mean``)."""
    lengths = {len(np.asarray(a)) for a in cold_attributes.values()}
    if n_cold is not None:
        lengths.add(n_cold)
    if len(lengths) > 1:
        raise ValueError(
            f"cold_attributes: one entry per cold item in every view, got lengths {sorted(lengths)}"
        )
    n = lengths.pop() if lengths else 0
    views = [v for v in model.views[1:] if v in model.attributes]
    warm = {v: _rows(model.attributes[v], model.vocab[v]) for v in views}
    cold = {v: _rows(cold_attributes.get(v, np.full(n, -1, dtype=np.int64)), model.vocab[v]) for v in views}
    side = {v: np.asarray(model.embeddings[v]) for v in views}
    return ColdInputs(
        np.asarray(model.embeddings[model.views[0]]),
        warm,
        cold,
        side,
        cold_count=n,
        warm_weights=warm_weights,
    )


ColdRule = Callable[..., Placement]
COLD_RULES: dict[str, ColdRule] = {
    "group-mean": group_mean_rule,
    "recent-mean": recent_mean_rule,
    "side-ridge": side_ridge_rule,
}


def place_cold(rule: str, inputs: ColdInputs, **options: Any) -> Placement:
    """Place the cold items of ``inputs`` with the rule named ``rule`` (``options`` are the rule's keyword
    arguments); an unknown name raises ``ValueError`` listing the valid ones."""
    try:
        fn = COLD_RULES[rule]
    except KeyError:
        raise ValueError(f"unknown cold rule {rule!r}; valid: {sorted(COLD_RULES)}") from None
    return fn(inputs, **options)
