"""What the explorer page (``/explore``) and ``GET /i2i?fields=title`` read from an index version, written
by ``build-index`` beside the maps and read only when a person asks (never by the lookups).

Build time (``write_explorer``): a 2-D map of the item space (the first two principal components of the
general-mode vectors, the vectors general mode ranks with), each item's training events, and, when the
dataset the model was trained on has them, the titles of the indexed items. Everything goes under
``IndexVersionLayout``'s ``explorer/`` folder, so the manifest's file inventory (sizes and checksums)
covers it like every other file. The names of string ids (e.g. MovieLens genre strings) are the
version's own labels (``index.labels``), which the service loads with the version and hands over.

Serve time (``Explorer.load``): those files, checked against the manifest, behind small lookups, in dense
ids (the routes translate). A version built before the explorer existed, or from a dataset without
titles, answers with ids only.

Why PCA rather than UMAP: it is a few lines of numpy over a ``[d, d]`` covariance (streamed, so a catalogue
of millions costs one pass and no extra dependency), deterministic, and its axes mean the same for every
point; the map is a picture to find one's bearings in, not a measurement.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from core.layout import DatasetLayout, IndexVersionLayout
from core.manifests import IndexManifest, ModelManifest
from core.titles import read_titles, write_titles
from index.errors import InvalidIndexVersion
from index.labels import VersionLabels, ViewLabels
from index.manifest import verify_files

log = logging.getLogger(__name__)

#: Rows per block when streaming the vectors through the projection.
_BLOCK_ROWS = 1 << 16
#: Most search results a caller may ask for.
MAX_SEARCH = 100


# ---------------------------------------------------------------------------------------------- build


def project_2d(vectors: npt.NDArray[np.floating[Any]]) -> tuple[npt.NDArray[np.float32], list[float]]:
    """Rows of ``vectors`` ``[n, d]`` on their first two principal components -> (float32 ``[n, 2]``,
    the share of the variance each axis explains). Streamed in blocks over a float64 ``[d, d]``
    covariance; the sign of each axis is fixed (its largest loading positive) so rebuilding the same
    vectors draws the same picture. A one-dimensional input gets a zero second axis."""
    x = np.asarray(vectors)
    if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"need a [n >= 1, d >= 1] matrix, got {x.shape}")
    n, d = x.shape
    mean = np.zeros(d)
    for start in range(0, n, _BLOCK_ROWS):
        mean += x[start : start + _BLOCK_ROWS].sum(axis=0, dtype=np.float64)
    mean /= n
    cov = np.zeros((d, d))
    for start in range(0, n, _BLOCK_ROWS):
        block = x[start : start + _BLOCK_ROWS].astype(np.float64) - mean
        cov += block.T @ block
    eigenvalues, eigenvectors = np.linalg.eigh(cov)  # ascending
    order = np.argsort(eigenvalues)[::-1][:2]
    axes = eigenvectors[:, order]
    for j in range(axes.shape[1]):
        if axes[np.argmax(np.abs(axes[:, j])), j] < 0:
            axes[:, j] *= -1
    if axes.shape[1] < 2:
        axes = np.hstack([axes, np.zeros((d, 1))])
    total = float(eigenvalues.clip(min=0).sum())
    explained = [float(max(eigenvalues[i], 0.0) / total) if total > 0 else 0.0 for i in order]
    explained += [0.0] * (2 - len(explained))
    out = np.empty((n, 2), dtype=np.float32)
    for start in range(0, n, _BLOCK_ROWS):
        out[start : start + _BLOCK_ROWS] = (x[start : start + _BLOCK_ROWS].astype(np.float64) - mean) @ axes
    return out, explained


def catalogue_dataset(model_dir: Path, dataset_dir: Path | None = None) -> Path | None:
    """The dataset whose titles and labels describe the model's items: ``dataset_dir`` when given, else
    the one the model manifest says it was trained on (None when neither names an existing folder)."""
    if dataset_dir is not None:
        return Path(dataset_dir) if Path(dataset_dir).is_dir() else None
    try:
        path = ModelManifest.read(model_dir).dataset_dir
    except (OSError, ValueError):
        return None
    return path if path is not None and path.is_dir() else None


def _train_counts(
    items: npt.NDArray[np.int64], dataset: DatasetLayout | None, view: str
) -> npt.NDArray[np.int64]:
    """Training events per item in ``items`` order (-1 where the dataset does not say)."""
    out = np.full(len(items), -1, dtype=np.int64)
    if dataset is None or not dataset.vocab_counts(view).is_file() or not dataset.vocab(view).is_file():
        return out
    vocab = np.asarray(np.load(dataset.vocab(view)), dtype=np.int64)
    counts = np.asarray(np.load(dataset.vocab_counts(view)), dtype=np.int64)
    if vocab.shape != counts.shape or len(vocab) == 0:
        return out
    order = np.argsort(vocab, kind="stable")
    pos = np.minimum(np.searchsorted(vocab[order], items), len(vocab) - 1)
    found = vocab[order][pos] == items
    out[found] = counts[order][pos[found]]
    return out


def write_explorer(
    layout: IndexVersionLayout,
    items: npt.NDArray[np.int64],
    general: npt.NDArray[np.float32],
    *,
    item_view: str = "item",
    dataset_dir: Path | None = None,
    cold: npt.NDArray[np.bool_] | None = None,
) -> dict[str, Any]:
    """Write ``explorer/`` into the (temporary) version folder ``layout``: the 2-D map of ``general``
    (rows aligned with ``items``), training counts (0 for the ``cold`` rows, which the card then calls
    cold) and, from ``dataset_dir`` when it has them, the titles of ``items``. Returns the manifest
    entry."""
    coords, explained = project_2d(general)
    layout.explorer_map.parent.mkdir(parents=True, exist_ok=True)
    np.save(layout.explorer_map, coords)
    dataset = DatasetLayout(Path(dataset_dir)) if dataset_dir is not None else None
    counts = _train_counts(items, dataset, item_view)
    if cold is not None:
        counts[np.asarray(cold, dtype=bool)] = 0
    np.save(layout.explorer_train_counts, counts)
    n_titles: int | None = None
    if dataset is not None:
        titles = read_titles(dataset.titles)
        if titles is not None:
            inside = pc.is_in(titles.column("item_id"), value_set=pa.array(items, pa.int64()))
            n_titles = write_titles(layout.explorer_titles, titles.filter(inside))
    return {
        "map": "pca",
        "explained_variance": explained,
        "titles": n_titles,
        "dataset": str(Path(dataset_dir).resolve()) if dataset_dir is not None else None,
    }


# ---------------------------------------------------------------------------------------------- serve


@dataclass(frozen=True)
class ItemCard:
    """What the explorer shows of one item: its title (None without titles), side attributes with their
    names (``{view: (id, label or None)}``), map position (None without a map) and training events
    (``train_count`` -1 unknown; ``cold`` when the item had none)."""

    item_id: int
    title: str | None
    attributes: dict[str, tuple[int, str | None]]
    x: float | None
    y: float | None
    train_count: int

    @property
    def cold(self) -> bool:
        return self.train_count == 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "item_id": self.item_id,
            "title": self.title,
            "attributes": {v: {"id": i, "label": lab} for v, (i, lab) in self.attributes.items()},
            "x": self.x,
            "y": self.y,
            "train_count": self.train_count,
            "cold": self.cold,
        }


@dataclass
class Explorer:
    """The explorer data of one index version (see the module docstring). ``items`` int64 ``[N]`` in the
    version's row order; ``attributes`` ``{view: int64 [N]}``; ``coords`` float32 ``[N, 2]`` or None;
    ``train_counts`` int64 ``[N]``; ``titles`` ``(item_id, title)`` or None; ``labels`` the names of the
    side views with string ids (the version's ``index.labels``)."""

    version: str
    items: npt.NDArray[np.int64]
    attributes: Mapping[str, npt.NDArray[np.int64]]
    coords: npt.NDArray[np.float32] | None = None
    train_counts: npt.NDArray[np.int64] | None = None
    titles: pa.Table | None = None
    labels: Mapping[str, ViewLabels] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._order = np.argsort(self.items, kind="stable")
        self._sorted = self.items[self._order]
        if self.titles is not None and self.titles.num_rows:
            by_id = self.titles.sort_by("item_id")
            self._title_ids = np.asarray(by_id.column("item_id").to_numpy(), dtype=np.int64)
            self._title_text: pa.Array | None = by_id.column("title").combine_chunks()
        else:
            self._title_ids = np.empty(0, dtype=np.int64)
            self._title_text = None

    @property
    def has_titles(self) -> bool:
        return self._title_text is not None

    @classmethod
    def load(
        cls, version_dir: Path, manifest: IndexManifest, labels: VersionLabels | None = None
    ) -> Explorer:
        """Read a version's ids, attributes and ``explorer/`` files after checking them against the
        manifest's inventory (sizes and checksums); ``labels`` are the version's, as loaded with it
        (``ServingIndex.labels``). A version without ``explorer`` in its manifest gets ids and attributes
        only. Raises ``InvalidIndexVersion`` naming a damaged or missing file."""
        layout = IndexVersionLayout(Path(version_dir))
        root = layout.root
        name = manifest.version or root.name
        files, spec, views = manifest.files, manifest.explorer, manifest.attribute_views
        if not files:
            raise InvalidIndexVersion(f"{name}: manifest has no file inventory")

        def rel(path: Path) -> str:
            return path.relative_to(root).as_posix()

        wanted = [rel(layout.items), *(rel(layout.attributes(v)) for v in views)]
        if spec is not None:
            wanted += [rel(layout.explorer_map), rel(layout.explorer_train_counts)]
            if spec.get("titles") is not None:
                wanted.append(rel(layout.explorer_titles))
        verify_files(root, {k: v for k, v in files.items() if k in wanted}, wanted, full=True)
        items = np.asarray(np.load(layout.items, allow_pickle=False), dtype=np.int64)
        attributes = {v: np.load(layout.attributes(v), mmap_mode="r", allow_pickle=False) for v in views}
        names = dict(labels.attributes) if labels is not None else {}
        out = cls(version=name, items=items, attributes=attributes, labels=names)
        if spec is None:
            return out
        coords = np.load(layout.explorer_map, allow_pickle=False)
        counts = np.load(layout.explorer_train_counts, allow_pickle=False)
        if coords.shape != (len(items), 2) or counts.shape != (len(items),):
            raise InvalidIndexVersion(
                f"{name}: explorer/ map {coords.shape} or counts {counts.shape} do not fit {len(items)} items"
            )
        titles = read_titles(layout.explorer_titles) if spec.get("titles") is not None else None
        return cls(
            version=name, items=items, attributes=attributes, coords=np.asarray(coords, dtype=np.float32),
            train_counts=np.asarray(counts, dtype=np.int64), titles=titles, labels=names,
        )  # fmt: skip

    # ------------------------------------------------------------------ lookups

    def rows(self, item_ids: Sequence[int] | npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """Rows of ``item_ids`` (-1 for ids not in the version)."""
        ids = np.asarray(item_ids, dtype=np.int64).ravel()
        if len(self.items) == 0:
            return np.full(len(ids), -1, dtype=np.int64)
        pos = np.minimum(np.searchsorted(self._sorted, ids), len(self.items) - 1)
        return np.where(self._sorted[pos] == ids, self._order[pos], -1).astype(np.int64)

    def titles_of(self, item_ids: Sequence[int] | npt.NDArray[np.int64]) -> list[str | None]:
        """Titles of ``item_ids`` in order (None where an item has none); a binary search per id, so
        cheap enough to run on a request that asks for titles."""
        ids = np.asarray(item_ids, dtype=np.int64).ravel()
        text = self._title_text
        if text is None or len(ids) == 0:
            return [None] * len(ids)
        pos = np.minimum(np.searchsorted(self._title_ids, ids), len(self._title_ids) - 1)
        found = self._title_ids[pos] == ids
        taken = text.take(pa.array(np.where(found, pos, 0), mask=~found))
        return list(taken.to_pylist())

    def label(self, view: str, value: int) -> str | None:
        """The name of attribute id ``value`` in ``view`` (None without labels or for ``-1``)."""
        labels = self.labels.get(view)
        return None if labels is None else labels.name_of(value)

    def search(
        self, query: str, limit: int = 20, id_of: Callable[[str], int | None] | None = None
    ) -> list[int]:
        """Item ids matching ``query``: the item whose id it is first (read by ``id_of``, e.g. a label
        lookup; default: an integer), then items whose title contains it (case-insensitive), most trained
        first (the version's row order). At most ``limit``."""
        query = query.strip()
        limit = max(1, min(int(limit), MAX_SEARCH))
        out: list[int] = []
        exact = (id_of or _integer)(query)
        if exact is not None and self.rows([exact])[0] >= 0:
            out.append(exact)
        text = self._title_text
        if text is None or not query:
            return out
        hits = np.flatnonzero(
            np.asarray(pc.fill_null(pc.match_substring(text, query, ignore_case=True), False))
        )
        if len(hits):
            rows = self.rows(self._title_ids[hits])
            rows = np.sort(rows[rows >= 0])
            out += [int(i) for i in self.items[rows] if int(i) not in out]
        return out[:limit]

    def cards(self, item_ids: Sequence[int]) -> list[ItemCard | None]:
        """One card per id (None for an id not in the version)."""
        rows = self.rows(item_ids)
        titles = self.titles_of(item_ids)
        out: list[ItemCard | None] = []
        for item, row, title in zip(item_ids, rows, titles, strict=True):
            if row < 0:
                out.append(None)
                continue
            attrs = {v: int(arr[row]) for v, arr in self.attributes.items()}
            xy = self.coords[row] if self.coords is not None else None
            out.append(
                ItemCard(
                    item_id=int(item),
                    title=title,
                    attributes={v: (a, self.label(v, a) if a >= 0 else None) for v, a in attrs.items()},
                    x=float(xy[0]) if xy is not None else None,
                    y=float(xy[1]) if xy is not None else None,
                    train_count=int(self.train_counts[row]) if self.train_counts is not None else -1,
                )
            )
        return out

    def map_points(self, max_points: int, category_view: str) -> dict[str, Any]:
        """Up to ``max_points`` points of the map (rows evenly spaced over the version: the rows are in
        training-frequency order, so the sample spans popular and rare items alike) with their item id,
        position and ``category_view`` attribute, plus the names of the categories drawn."""
        n = len(self.items)
        if self.coords is None or n == 0:
            return {"version": self.version, "total": n, "ids": [], "x": [], "y": [], "category": [],
                    "category_labels": {}}  # fmt: skip
        rows = np.unique(np.linspace(0, n - 1, num=min(n, max(1, max_points))).round().astype(np.int64))
        cats_arr = self.attributes.get(category_view)
        cats = np.asarray(cats_arr[rows]) if cats_arr is not None else np.full(len(rows), -1)
        labels = self.labels.get(category_view)
        present = np.unique(cats[cats >= 0])
        names = labels.names_of(present.tolist()) if labels is not None else [None] * len(present)
        return {
            "version": self.version,
            "total": n,
            "ids": self.items[rows].tolist(),
            "x": np.round(self.coords[rows, 0].astype(np.float64), 5).tolist(),
            "y": np.round(self.coords[rows, 1].astype(np.float64), 5).tolist(),
            "category": cats.astype(np.int64).tolist(),
            "category_labels": {str(int(c)): name for c, name in zip(present, names, strict=True) if name},
        }


def _integer(query: str) -> int | None:
    """``query`` as an int64 id, or None."""
    return int(query) if query.lstrip("-").isdigit() and len(query) <= 19 else None
