"""Read and check the builder's inputs: a model folder (``core.layout.ModelLayout``) and optionally a
metric folder (``core.layout.MetricLayout``), with numpy only (no dependency on ``model/``).

Everything is validated before any index is built; a broken input raises ``InvalidArtifact`` naming the
file and the problem, so nothing is published.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from core.atomic import sha256_file
from core.layout import MetricLayout, ModelLayout
from core.manifests import MetricManifest, ModelManifest
from core.types import Mode
from index.errors import InvalidArtifact
from index.registry import Metric

DEFAULT_ITEM_VIEW = "item"
#: Rows per block for the finiteness scan (keeps temporaries small on big memory-mapped inputs).
_SCAN_ROWS = 1 << 16


@dataclass(frozen=True)
class ModeInput:
    """Vectors of one mode (float32 ``[N, d]``, rows aligned with the item vocabulary), its metric and
    where they came from (for the manifest)."""

    vectors: npt.NDArray[np.float32]
    metric: Metric
    source: str


@dataclass(frozen=True)
class ChannelInput:
    """A map-only retrieval channel (``index.channels``): top-N row indices int32 ``[N, T]`` (``-1``
    padded, rank order, rows aligned with the item vocabulary), or ``[1, T]`` for one list shared by
    every trigger; their scores, and where they came from."""

    topn_ids: npt.NDArray[np.int32]
    topn_scores: npt.NDArray[np.float32]
    source: str

    @property
    def shared(self) -> bool:
        """One list for every trigger (a map of one row)."""
        return len(self.topn_ids) == 1

    def check(self, name: str, n: int) -> None:
        """Raise ``InvalidArtifact`` unless the map fits ``n`` items (shapes, row range, finite scores)."""
        ids, scores = self.topn_ids, self.topn_scores
        if ids.ndim != 2 or ids.shape != scores.shape or ids.shape[0] not in (1, n) or ids.shape[1] < 1:
            raise InvalidArtifact(
                f"channel {name!r}: map of shape {ids.shape} (scores {scores.shape}), expected ({n}, T>=1) "
                "or (1, T>=1) for a shared list"
            )
        if int(ids.min()) < -1 or int(ids.max()) >= n:
            raise InvalidArtifact(f"channel {name!r}: row indices outside [-1, {n})")
        if not np.isfinite(scores[ids >= 0]).all():
            raise InvalidArtifact(f"channel {name!r}: NaN or infinite scores")


@dataclass(frozen=True)
class ColdInput:
    """Catalogue items without a trained row, placed from their side views (``offline.jobs.cold_items``):
    int64 ``items [M]`` (none of them a model item), their side ``attributes`` (view -> int64 ``[M]``, the
    version's id space, ``-1`` unknown), float32 ``vectors`` per mode ``[M, d]`` exactly as they are to be
    indexed (any scale already applied), and what the manifest records of them (``details``: the rule,
    the scale, the dataset...)."""

    items: npt.NDArray[np.int64]
    attributes: dict[str, npt.NDArray[np.int64]]
    vectors: dict[str, npt.NDArray[np.float32]]
    details: dict[str, Any]


@dataclass(frozen=True)
class BuildInputs:
    """Everything the builder needs: item ids, side attributes, vectors per mode, source descriptions.

    ``cold`` marks the rows appended by :func:`with_cold` (None: the model's items only) and
    ``cold_details`` is their manifest entry."""

    items: npt.NDArray[np.int64]
    attributes: dict[str, npt.NDArray[np.int64]]
    modes: dict[str, ModeInput]
    sources: dict[str, dict[str, Any]]
    item_view: str
    cold: npt.NDArray[np.bool_] | None = None
    cold_details: dict[str, Any] | None = None

    @property
    def num_items(self) -> int:
        return len(self.items)


def with_cold(inputs: BuildInputs, cold: ColdInput) -> BuildInputs:
    """``inputs`` with the rows of ``cold`` appended after the model's (so every warm row keeps its
    position and its vectors) and ``cold`` marking them. Raises ``InvalidArtifact`` when ``cold`` does
    not fit: an id repeated or already a model item, a mode without vectors, another dimension, a
    non-finite vector, an attribute array of another length."""
    m = len(cold.items)
    items = np.asarray(cold.items, dtype=np.int64)
    if items.ndim != 1 or len(np.unique(items)) != m:
        raise InvalidArtifact("cold items: expected unique ids in a 1-D array")
    if np.isin(items, inputs.items).any():
        raise InvalidArtifact("cold items: some already have a trained row")
    if set(cold.vectors) != set(inputs.modes):
        raise InvalidArtifact(
            f"cold items: vectors for modes {sorted(cold.vectors)}, the version has {sorted(inputs.modes)}"
        )
    modes: dict[str, ModeInput] = {}
    for mode, data in inputs.modes.items():
        x = np.asarray(cold.vectors[mode], dtype=np.float32)
        if x.shape != (m, data.vectors.shape[1]):
            raise InvalidArtifact(
                f"cold items: {mode} vectors of shape {x.shape}, expected ({m}, {data.vectors.shape[1]})"
            )
        if not np.isfinite(x).all():
            raise InvalidArtifact(f"cold items: {mode} vectors hold NaN or infinite values")
        modes[mode] = ModeInput(
            np.ascontiguousarray(np.concatenate([data.vectors, x])), data.metric, data.source
        )
    attributes: dict[str, npt.NDArray[np.int64]] = {}
    for view, warm in inputs.attributes.items():
        values = np.asarray(cold.attributes.get(view, np.full(m, -1)), dtype=np.int64)
        if values.shape != (m,):
            raise InvalidArtifact(
                f"cold items: attributes[{view!r}] of shape {values.shape}, expected ({m},)"
            )
        attributes[view] = np.concatenate([warm, values])
    marker = np.concatenate([np.zeros(inputs.num_items, dtype=bool), np.ones(m, dtype=bool)])
    return replace(
        inputs, items=np.concatenate([inputs.items, items]), attributes=attributes, modes=modes,
        cold=marker, cold_details={**cold.details, "items": m},
    )  # fmt: skip


def _source(root: Path, manifest_path: Path, **fields: Any) -> dict[str, Any]:
    """Path of a source folder, its manifest's sha256 and the identifying manifest ``fields`` given."""
    info: dict[str, Any] = {"path": str(root.resolve()), "manifest_sha256": None}
    if manifest_path.is_file():
        info["manifest_sha256"] = sha256_file(manifest_path)
    return info | {k: v for k, v in fields.items() if v is not None}


def _load(path: Path) -> np.ndarray:
    if not path.is_file():
        raise InvalidArtifact(f"{path}: required file is missing")
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise InvalidArtifact(f"{path}: unreadable .npy file: {exc}") from exc


def check_vectors(path: Path, arr: np.ndarray, n: int) -> npt.NDArray[np.float32]:
    """``arr`` must be a finite float ``[n, d>0]`` matrix; returns it as contiguous float32."""
    if arr.ndim != 2 or arr.shape[1] == 0:
        raise InvalidArtifact(f"{path}: expected a 2-D [items, dim] matrix, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.floating):
        raise InvalidArtifact(f"{path}: expected float32 vectors, got dtype {arr.dtype}")
    if arr.shape[0] != n:
        raise InvalidArtifact(
            f"{path}: {arr.shape[0]} rows but the item vocabulary has {n} ids (ids do not match the vectors)"
        )
    out = np.ascontiguousarray(arr, dtype=np.float32)
    for start in range(0, n, _SCAN_ROWS):
        block = out[start : start + _SCAN_ROWS]
        if not np.isfinite(block).all():
            bad = start + int(np.flatnonzero(~np.isfinite(block).all(axis=1))[0])
            raise InvalidArtifact(f"{path}: row {bad} has NaN or infinite values")
    return out


def require_complete(model_dir: Path, metric_dir: Path | None = None) -> None:
    """Raise ``InvalidArtifact`` unless the model (and metric) folder has its manifest: the jobs write it
    last, inside ``core.atomic.atomic_dir``, so a folder without one is not a finished artifact (a copy
    cut short, a hand-made folder) and must not be published."""
    manifests = [(ModelLayout(Path(model_dir)).manifest, "model")]
    if metric_dir is not None:
        manifests.append((MetricLayout(Path(metric_dir)).manifest, "metric model"))
    for manifest, what in manifests:
        if manifest.parent.is_dir() and not manifest.is_file():
            raise InvalidArtifact(
                f"{manifest}: missing, so {manifest.parent} is not a complete {what} folder"
            )


def _model_manifest(layout: ModelLayout) -> ModelManifest:
    """The model manifest (an instance view named ``item`` when the folder has none); a malformed one is
    ``InvalidArtifact``."""
    if not layout.manifest.is_file():
        return ModelManifest(views=[DEFAULT_ITEM_VIEW])
    try:
        return ModelManifest.read(layout.root)
    except ValueError as exc:
        raise InvalidArtifact(str(exc)) from None


def norm_scaled(vectors: npt.NDArray[np.float32], exponent: float) -> npt.NDArray[np.float32]:
    """Rows divided by their length to the power ``exponent`` (1: unit rows, cosine served as inner
    product; 0: unchanged); all-zero rows stay zero."""
    if exponent == 0:
        return np.ascontiguousarray(vectors, dtype=np.float32)
    norms = np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    return np.ascontiguousarray(vectors / norms**exponent, dtype=np.float32)


def read_inputs(model_dir: Path, metric_dir: Path | None = None) -> BuildInputs:
    """Read ``model_dir`` (instance-view embeddings scaled by :func:`norm_scaled` with the model's
    ``norm_exponent`` -> mode ``general``, inner product) and, when given, ``metric_dir`` (``diversity.npy``
    -> mode ``diversity``, L2). Raises ``InvalidArtifact``."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise InvalidArtifact(f"{model_dir}: model folder does not exist")
    layout = ModelLayout(model_dir)
    manifest = _model_manifest(layout)
    item_view = manifest.item_view
    vocab_path = layout.vocab(item_view)
    vocab = _load(vocab_path)
    if vocab.ndim != 1 or not np.issubdtype(vocab.dtype, np.integer):
        raise InvalidArtifact(f"{vocab_path}: expected a 1-D int64 id array, got {vocab.dtype} {vocab.shape}")
    items = np.asarray(vocab, dtype=np.int64)
    n = len(items)
    if n < 2:
        raise InvalidArtifact(f"{vocab_path}: an index needs at least 2 items, got {n}")
    uniq, counts = np.unique(items, return_counts=True)
    if len(uniq) != n:
        raise InvalidArtifact(f"{vocab_path}: item id {int(uniq[counts > 1][0])} appears more than once")

    emb_path = layout.embeddings(item_view)
    general = norm_scaled(check_vectors(emb_path, _load(emb_path), n), manifest.norm_exponent)
    modes = {Mode.GENERAL.value: ModeInput(general, "ip", str(emb_path))}
    attributes: dict[str, npt.NDArray[np.int64]] = {}
    attr_dir = layout.attributes(item_view).parent
    if attr_dir.is_dir():
        for path in sorted(attr_dir.glob("*.npy")):
            arr = _load(path)
            if arr.shape != (n,) or not np.issubdtype(arr.dtype, np.integer):
                raise InvalidArtifact(
                    f"{path}: expected int64 [{n}] (one attribute per item), got {arr.dtype} {arr.shape}"
                )
            attributes[path.stem] = np.asarray(arr, dtype=np.int64)
    sources = {"model": _source(model_dir, layout.manifest, version=manifest.version, views=manifest.views)}

    if metric_dir is not None:
        metric_dir = Path(metric_dir)
        if not metric_dir.is_dir():
            raise InvalidArtifact(f"{metric_dir}: metric folder does not exist")
        metric = MetricLayout(metric_dir)
        z = check_vectors(metric.diversity, _load(metric.diversity), n)
        modes[Mode.DIVERSITY.value] = ModeInput(z, "l2", str(metric.diversity))
        if metric.manifest.is_file():
            try:
                MetricManifest.read(metric_dir)
            except ValueError as exc:
                raise InvalidArtifact(str(exc)) from None
        sources["metric"] = _source(metric_dir, metric.manifest)
    return BuildInputs(items=items, attributes=attributes, modes=modes, sources=sources, item_view=item_view)
