"""``ServingIndex``: item-to-item retrieval over one index version, used by the service and by the
evaluation harness alike (one neighbour code path).

A lookup reads the precomputed top-N map (section 4 of the paper: "I2I similarity maps", memory-mapped,
no search). Only when exclusions leave fewer than ``k`` candidates does it search the FAISS index, with
``k`` growing x4 per round up to the whole catalogue, so answers are never padded with placeholders;
``NeighbourResult.exhausted`` says when fewer than ``k`` candidates exist at all.

Scores are "higher is closer": inner product (``ip``) or negated squared L2 distance (``l2``).
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar, cast

import faiss
import numpy as np
import numpy.typing as npt

from core.layout import IndexVersionLayout
from core.manifests import INDEX_FORMAT, IndexManifest
from core.types import Float32Array, IntArray, NeighbourResult
from index.channels import (
    CHANNEL_MODES,
    FUSED,
    SINGLE_MIX,
    FuseScratch,
    channel_row,
    check_mix,
    fuse,
    source_lists,
)
from index.errors import (
    DamagedIndex,
    IndexNotReady,
    InvalidIndexVersion,
    UnknownChannel,
    UnknownItem,
    UnknownMode,
    UnknownView,
)
from index.labels import VersionLabels, read_labels
from index.manifest import verify_files
from index.registry import METRICS, IndexParams, IndexType, Metric, faiss_metric, get_index_type
from index.topn import build_topn_map, compact_rows, search_rows, to_scores

log = logging.getLogger(__name__)


#: Growth of the search breadth per refill round.
GROWTH = 4
#: Up to this many excluded categories, membership is one compare per category (cheaper than np.isin).
SMALL_EXCLUSION = 8
#: Rows per block when scanning maps at load time (keeps temporaries small).
_SCAN_ROWS = 1 << 16


@dataclass
class _Mode:
    """One served mode: its precomputed map, and (optionally) the FAISS index behind it."""

    metric: Metric
    topn_ids: npt.NDArray[np.int32]
    topn_scores: npt.NDArray[Any]
    index: faiss.Index | None = None
    index_type: IndexType | None = None
    params: IndexParams = IndexParams()
    vectors: Float32Array | None = None
    #: the attribute view whose value the map leaves out of each row's neighbours (``index.build``)
    excludes_own: str | None = None

    @functools.cached_property
    def width(self) -> int:
        return int(self.topn_ids.shape[1])

    def query_vectors(self, rows: IntArray) -> Float32Array:
        """The stored vectors of ``rows`` (exact when kept in memory, else decoded from the index)."""
        if self.vectors is not None:
            return np.ascontiguousarray(self.vectors[rows], dtype=np.float32)
        assert self.index is not None  # callers check; not an input check
        return np.asarray(self.index.reconstruct_batch(np.asarray(rows, dtype=np.int64)), dtype=np.float32)

    def search(self, rows: IntArray, width: int, exhaustive: bool = False) -> tuple[IntArray, Float32Array]:
        """Top-``width`` rows (self removed) for ``rows`` by FAISS search."""
        assert self.index is not None and self.index_type is not None
        params = self.index_type.search_params(self.index, self.params, width + 1, exhaustive)
        return search_rows(self.index, self.query_vectors(rows), rows, width, self.metric, params)


#: a lookup method of ``ServingIndex`` returning a ``NeighbourResult``
_Lookup = TypeVar("_Lookup", bound=Callable[..., NeighbourResult])


def _reports_damage(lookup: _Lookup) -> _Lookup:
    """A lookup raises ``DamagedIndex`` when a mapped file no longer holds what was validated at load
    (a row index out of range), instead of an ``IndexError`` from inside numpy."""

    @functools.wraps(lookup)
    def guarded(self: ServingIndex, *args: Any, **kwargs: Any) -> NeighbourResult:
        try:
            return lookup(self, *args, **kwargs)
        except IndexError as exc:
            raise DamagedIndex(self.version, f"a map lists a row outside the catalogue ({exc})") from exc

    return cast(_Lookup, guarded)


def _leading_k(cand: npt.NDArray[np.integer[Any]], row: int, k: int) -> bool:
    """Whether the first ``k`` entries of map row ``cand`` of trigger ``row`` are all answers, neither
    padding nor the trigger: a lookup without exclusions then takes them as they are."""
    if k > len(cand):
        return False
    # as Python ints: on the running server three numpy reductions over 50 entries cost more than this
    head = cand[:k].tolist()
    return min(head) >= 0 and row not in head


@dataclass(frozen=True)
class _Fused:
    """A version's precomputed default-mix map (``index.channels.fused_map``) and what it covers:
    lookups of ``mix`` with ``k`` up to ``topn`` and the channels' own depth."""

    mix: dict[str, float]
    depth: int
    ids: npt.NDArray[np.int32]
    scores: npt.NDArray[np.float32]
    sources: npt.NDArray[np.uint8]

    @property
    def topn(self) -> int:
        return int(self.ids.shape[1])


class ServingIndex:
    """Neighbour lookups over one index version (see the module docstring).

    Attributes: ``version``, ``manifest`` (``core.manifests.IndexManifest``), ``modes`` (served mode names), ``num_items``,
    ``attribute_views`` (side attributes stored per item, e.g. ``category``), ``labels`` (the user's own
    string ids of the item and side views, ``index.labels``; None for a version of integer ids),
    ``num_cold`` (items placed from their side views, flagged ``cold`` in every answer). Lookups
    take and return dense ids either way: the service translates at its boundary.
    Thread-safe for concurrent lookups (FAISS search parameters are passed per call).
    """

    def __init__(
        self,
        *,
        version: str,
        manifest: IndexManifest,
        items: IntArray,
        attributes: Mapping[str, npt.NDArray[np.int64]],
        modes: Mapping[str, _Mode],
        channels: Mapping[str, _Mode] | None = None,
        default_mix: Mapping[str, float] | None = None,
        fused: _Fused | None = None,
        labels: VersionLabels | None = None,
        cold: npt.NDArray[np.bool_] | None = None,
    ) -> None:
        items = np.asarray(items)
        channels = dict(channels or {})
        if items.ndim != 1 or not np.issubdtype(items.dtype, np.integer):
            raise InvalidIndexVersion(
                f"{version}: items must be a 1-D integer array, got {items.dtype} {items.shape}"
            )
        n = len(items)
        for view, arr in attributes.items():
            if arr.shape != (n,):
                raise InvalidIndexVersion(
                    f"{version}: attributes/{view} has shape {arr.shape}, expected ({n},)"
                )
        for name, m in (*modes.items(), *channels.items()):
            rows = (n, 1) if name in channels else (n,)  # a channel may be one shared list
            if (
                m.topn_ids.ndim != 2
                or m.topn_ids.shape[0] not in rows
                or m.topn_scores.shape != m.topn_ids.shape
            ):
                raise InvalidIndexVersion(
                    f"{version}: mode {name!r} map has shape {m.topn_ids.shape} / {m.topn_scores.shape}, "
                    f"expected ({n}, topn) for both ids and scores"
                    + (" (or (1, topn): a shared list)" if name in channels else "")
                )
            if m.index is not None and int(m.index.ntotal) != n:
                raise InvalidIndexVersion(
                    f"{version}: mode {name!r} FAISS index holds {m.index.ntotal} vectors but the id map has {n} items"
                )
        if cold is not None and (cold.shape != (n,) or cold.dtype != np.bool_):
            raise InvalidIndexVersion(
                f"{version}: cold marker {cold.dtype} {cold.shape}, expected bool ({n},)"
            )
        self.version = version
        self.manifest = manifest
        self.num_items = n
        #: per row, whether the item is cold; None when the version holds none (every answer says false)
        self._cold = cold
        self.num_cold = int(cold.sum()) if cold is not None else 0
        self.modes: tuple[str, ...] = tuple(modes)
        self.attribute_views: tuple[str, ...] = tuple(attributes)
        self._items = items.astype(np.int64, copy=False)
        self._order = np.argsort(self._items, kind="stable")
        self._sorted = self._items[self._order]
        if n > 1 and bool((self._sorted[1:] == self._sorted[:-1]).any()):
            dup = int(self._sorted[1:][self._sorted[1:] == self._sorted[:-1]][0])
            raise InvalidIndexVersion(f"{version}: item id {dup} appears more than once in the id map")
        self._attributes = dict(attributes)
        self._modes: dict[str, _Mode] | None = dict(modes)
        self._channel_maps = channels
        self._local = threading.local()
        #: channels this version can serve: ``m2grl`` (the general mode) and the stored maps
        self.channels: tuple[str, ...] = tuple(
            c for c, m in CHANNEL_MODES.items() if m in modes or c in channels
        )
        # a version built without channels serves its general mode alone
        self.default_mix = dict(SINGLE_MIX)
        if default_mix is not None:
            try:
                self.default_mix = check_mix(default_mix, f"{version}: default_mix")
            except ValueError as exc:
                raise InvalidIndexVersion(str(exc)) from None
            missing = [c for c in self.default_mix if c not in self.channels]
            if missing:
                raise InvalidIndexVersion(f"{version}: default_mix names channels {missing} it does not hold")
        if fused is not None and (fused.mix != self.default_mix or fused.ids.shape[0] != n):
            raise InvalidIndexVersion(f"{version}: the fused map is not the default mix's map of {n} items")
        self._fused = fused
        if labels is not None:
            labels.check(version, self._items, self._attributes)
        #: loaded once with the version; None keeps the integer-id path free of any translation
        self.labels = labels
        self._lock = threading.Lock()
        #: whether maps and attributes are memory-mapped (``load(mmap=True)``): then a change of the files
        #: on disk reaches the lookups, and the service re-verifies them (``app.reload``)
        self.mapped = False

    # ------------------------------------------------------------------ constructors

    @classmethod
    def load(cls, version_dir: Path, *, mmap: bool = True, full_checksums: bool = False) -> ServingIndex:
        """Open a version folder (``core.layout.IndexVersionLayout``) after validating it: completion marker
        present, manifest readable, every file's size and (cheap) checksum, shapes and dimensions
        consistent, ids unique, maps in range and finite, FAISS index readable and matching.

        Maps and attributes are memory-mapped when ``mmap``; the labels (``index.labels``), when the manifest
        lists any, are read here once. Raises ``InvalidIndexVersion`` with the reason.
        """
        layout = IndexVersionLayout(Path(version_dir))
        name = layout.root.name
        if not layout.root.is_dir():
            raise InvalidIndexVersion(f"{name}: version folder {layout.root} does not exist")
        if not layout.complete_marker.is_file():
            raise InvalidIndexVersion(
                f"{name}: no completion marker {layout.complete_marker.name} (build unfinished?)"
            )
        try:
            manifest = IndexManifest.read(layout.manifest)
        except ValueError as exc:
            raise InvalidIndexVersion(f"{name}: {exc}") from None
        n, views, mode_specs = manifest.num_items, manifest.attribute_views, manifest.modes
        channel_specs, default_mix = manifest.channels, manifest.default_mix
        unknown = [c for c in channel_specs if c not in CHANNEL_MODES or CHANNEL_MODES[c] in mode_specs]
        if unknown:
            raise InvalidIndexVersion(f"{name}: manifest lists unknown map-only channels {unknown}")
        root = layout.root
        required = [layout.items.relative_to(root).as_posix()]
        required += [layout.attributes(v).relative_to(root).as_posix() for v in views]
        for mode in mode_specs:
            for path in (layout.faiss_index(mode), layout.topn_ids(mode), layout.topn_scores(mode)):
                required.append(path.relative_to(root).as_posix())
        for channel in channel_specs:
            for path in (layout.topn_ids(channel), layout.topn_scores(channel)):
                required.append(path.relative_to(root).as_posix())
        if manifest.fused:
            for path in (layout.topn_ids(FUSED), layout.topn_scores(FUSED), layout.topn_sources(FUSED)):
                required.append(path.relative_to(root).as_posix())
        labelled = manifest.labels
        required += [layout.labels(v).relative_to(root).as_posix() for v in labelled]
        cold_spec = manifest.cold
        if cold_spec is not None:
            required.append(layout.cold.relative_to(root).as_posix())
        verify_files(root, manifest.files, required, full=full_checksums)

        mmap_mode: Literal["r"] | None = "r" if mmap else None
        items = _load_array(layout.items, name, None, np.int64, (n,))
        attributes = {v: _load_array(layout.attributes(v), name, mmap_mode, np.int64, (n,)) for v in views}
        modes: dict[str, _Mode] = {}
        for mode, spec in mode_specs.items():
            modes[mode] = _load_mode(layout, name, mode, spec, n, mmap_mode)
            if modes[mode].excludes_own not in (None, *views):
                raise InvalidIndexVersion(
                    f"{name}: mode {mode!r} excludes_own names {modes[mode].excludes_own!r}, not a stored view"
                )
        channels: dict[str, _Mode] = {}
        for channel, spec in channel_specs.items():
            try:
                topn = int(spec["topn"])
                rows = int(spec.get("rows", n))  # versions written before shared lists: a row per item
            except (KeyError, TypeError, ValueError) as exc:
                raise InvalidIndexVersion(
                    f"{name}: manifest entry of channel {channel!r} malformed: {exc}"
                ) from exc
            if rows not in (1, n):
                raise InvalidIndexVersion(f"{name}: channel {channel!r} has {rows} rows, expected 1 or {n}")
            ids, scores = _load_map(layout, name, channel, n, topn, mmap_mode, rows=rows)
            channels[channel] = _Mode("ip", ids, scores)
        fused = _load_fused(layout, name, manifest.fused, n, mmap_mode)
        labels = read_labels(layout, name, labelled, manifest.item_view, views)
        cold = _load_cold(layout, name, cold_spec, n)
        index = cls(
            version=name, manifest=manifest, items=items, attributes=attributes, modes=modes,
            channels=channels, default_mix=default_mix, fused=fused, labels=labels, cold=cold,
        )  # fmt: skip
        index.mapped = mmap
        return index

    @classmethod
    def from_vectors(
        cls,
        items: npt.ArrayLike,
        attributes: Mapping[str, npt.ArrayLike],
        vectors: Mapping[str, npt.ArrayLike],
        metrics: Mapping[str, Literal["ip", "l2"]],
        *,
        topn: int = 200,
        index_type: str = "flat",
        version: str = "in-memory",
        params: IndexParams | None = None,
        batch_size: int = 4096,
        channel_maps: Mapping[str, tuple[npt.ArrayLike, npt.ArrayLike]] | None = None,
        default_mix: Mapping[str, float] | None = None,
    ) -> ServingIndex:
        """An in-memory index over ``vectors`` (``{mode: float32 [N, d]}``, rows aligned with ``items``),
        scored per mode by ``metrics`` (``ip`` or ``l2``); the top-``topn`` map is computed here exactly
        as the builder does (scores kept as float32). ``channel_maps`` adds map-only channels
        (``{name: (row ids [N, T], scores)}``, e.g. ``cooc``) served through ``default_mix``. Used by the
        evaluation harness."""
        ids = np.asarray(items, dtype=np.int64)
        attrs = {v: np.asarray(a, dtype=np.int64) for v, a in attributes.items()}
        if set(vectors) != set(metrics):
            raise ValueError(
                f"metrics: modes {sorted(metrics)} do not match the vector modes {sorted(vectors)}"
            )
        if isinstance(topn, bool) or not isinstance(topn, int) or topn < 1:
            raise ValueError(f"topn: must be a positive int, got {topn!r}")
        p = params or IndexParams()
        kind = get_index_type(index_type)
        modes: dict[str, _Mode] = {}
        for mode, raw in vectors.items():
            metric = metrics[mode]
            if metric not in METRICS:
                raise ValueError(f"metrics[{mode!r}]: {metric!r} is not one of {list(METRICS)}")
            x = np.ascontiguousarray(raw, dtype=np.float32)
            if x.ndim != 2 or x.shape[0] != len(ids):
                raise ValueError(f"vectors[{mode!r}]: shape {x.shape}, expected ({len(ids)}, dim)")
            if not np.isfinite(x).all():
                raise ValueError(f"vectors[{mode!r}]: contains NaN or infinite values")
            kind.check(int(x.shape[1]), len(ids), p)
            index = kind.make(int(x.shape[1]), metric, len(ids), p)
            if not index.is_trained:
                index.train(x)
            index.add(x)
            search_params = kind.search_params(index, p, topn + 1, False)
            map_ids, map_scores = build_topn_map(
                index, x, topn, metric, params=search_params, batch_size=batch_size, progress=False
            )
            modes[mode] = _Mode(metric, map_ids, map_scores, index, kind, p, x)
        manifest = _in_memory_manifest(
            version,
            len(ids),
            list(attrs),
            {
                m: {"metric": metrics[m], "index_type": kind.name, "topn": topn, "dim": int(modes[m].index.d)}  # type: ignore[union-attr]
                for m in modes
            },
        )
        channels = {
            c: _map_mode(c_ids, c_scores, len(ids), f"channel_maps[{c!r}]", shared=True)
            for c, (c_ids, c_scores) in (channel_maps or {}).items()
        }
        return cls(
            version=version, manifest=manifest, items=ids, attributes=attrs, modes=modes,
            channels=channels, default_mix=default_mix,
        )  # fmt: skip

    @classmethod
    def from_topn(
        cls,
        items: npt.ArrayLike,
        attributes: Mapping[str, npt.ArrayLike],
        topn_ids: Mapping[str, npt.ArrayLike],
        topn_scores: Mapping[str, npt.ArrayLike],
        version: str = "topn-map",
    ) -> ServingIndex:
        """A map-only index: ``topn_ids[mode]`` int ``[N, T]`` *row indices* (``-1`` padded, rank order)
        with ``topn_scores[mode]``. No FAISS index: lookups beyond the map report ``exhausted``. For
        similarity-map baselines (Item-CF, popularity). Rows listing themselves are tolerated (skipped)."""
        ids = np.asarray(items, dtype=np.int64)
        attrs = {v: np.asarray(a, dtype=np.int64) for v, a in attributes.items()}
        if set(topn_ids) != set(topn_scores):
            raise ValueError(
                f"topn_scores: modes {sorted(topn_scores)} do not match topn_ids {sorted(topn_ids)}"
            )
        modes = {
            mode: _map_mode(topn_ids[mode], topn_scores[mode], len(ids), f"topn_ids[{mode!r}]")
            for mode in topn_ids
        }
        manifest = _in_memory_manifest(
            version, len(ids), list(attrs), {m: {"index_type": None, "topn": modes[m].width} for m in modes}
        )
        return cls(version=version, manifest=manifest, items=ids, attributes=attrs, modes=modes)

    # ------------------------------------------------------------------ lookups

    def _mode(self, mode: str) -> _Mode:
        modes = self._modes
        if modes is None:
            raise IndexNotReady(f"index version {self.version} is closed")
        try:
            return modes[mode]
        except KeyError:
            raise UnknownMode(str(mode), list(modes)) from None

    def _rows(self, item_ids: npt.ArrayLike) -> IntArray:
        """Rows of ``item_ids`` (``-1`` for unknown ids), by binary search in the sorted id array."""
        ids = np.asarray(item_ids, dtype=np.int64).ravel()
        if self.num_items == 0:
            return np.full(len(ids), -1, dtype=np.int64)
        pos = np.minimum(np.searchsorted(self._sorted, ids), self.num_items - 1)
        found = self._sorted[pos] == ids
        return np.where(found, self._order[pos], -1).astype(np.int64)

    def _row(self, item_id: int) -> int:
        try:
            key = int(item_id)
        except (TypeError, ValueError, OverflowError):
            raise UnknownItem(item_id) from None  # type: ignore[arg-type]
        if not -(2**63) <= key < 2**63:
            raise UnknownItem(key)
        # scalar binary search (the request path: one id, no temporary arrays)
        pos = int(self._sorted.searchsorted(np.int64(key)))
        if pos >= self.num_items or int(self._sorted[pos]) != key:
            raise UnknownItem(key)
        return int(self._order[pos])

    def has_item(self, item_id: int) -> bool:
        """Whether ``item_id`` (an original id) is in the index."""
        try:
            self._row(item_id)
        except UnknownItem:
            return False
        return True

    def attribute_of(self, item_id: int, view: str) -> int:
        """``item_id``'s attribute in ``view`` (``-1`` unknown or view not stored); raises ``UnknownItem``."""
        row = self._row(item_id)
        arr = self._attributes.get(view)
        return -1 if arr is None else int(arr[row])

    def is_cold(self, item_id: int) -> bool:
        """Whether ``item_id`` is a cold item (placed from its side views); raises ``UnknownItem``."""
        row = self._row(item_id)
        return self._cold is not None and bool(self._cold[row])

    def attributes_of(self, item_id: int) -> dict[str, int]:
        """``{view: attribute id}`` of ``item_id`` (``-1`` unknown); raises ``UnknownItem``."""
        row = self._row(item_id)
        return {view: int(arr[row]) for view, arr in self._attributes.items()}

    @_reports_damage
    def neighbours(
        self,
        item_id: int,
        mode: str,
        k: int,
        *,
        exclude_categories: Collection[int] = (),
        exclude_items: Collection[int] = (),
        category_view: str = "category",
        _channel: str | None = None,
    ) -> NeighbourResult:
        """Top-``k`` neighbours of ``item_id`` in ``mode``, best first, never the trigger itself, without
        items in ``exclude_items`` nor items whose ``category_view`` attribute is in ``exclude_categories``.

        Reads the precomputed map; searches FAISS (growing breadth) only when exclusions leave fewer than
        ``k``. ``exhausted`` is True when fewer than ``k`` candidates exist; ``filtered_out`` counts the
        candidates that ranked above the last returned one (or anywhere, when exhausted) and were excluded.
        A mode whose map leaves out each item's own category (``excludes_own`` = ``category_view``, the
        diversity mode) never answers the trigger's category, and its map does not count those as
        filtered.
        Raises ``UnknownItem``, ``UnknownMode``, ``UnknownView`` (category view not stored), ``ValueError``
        (``k`` < 1), ``DamagedIndex`` (a mapped file changed since it was validated).
        """
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
            raise ValueError(f"k: must be a positive int, got {k!r}")
        k = int(k)
        m = self._mode(mode)
        row = self._row(item_id)
        # the map's own int32 / float16 rows (no conversion copies); _result converts what is kept
        cand = m.topn_ids[row]
        scores = m.topn_scores[row]
        own = self._own_left_out(m, row, category_view)
        if own is not None and own not in exclude_categories:
            exclude_categories = (*exclude_categories, own)
        if not exclude_items and all(c == own for c in exclude_categories) and _leading_k(cand, row, k):
            channels, counts = (None, None) if _channel is None else ([[_channel]] * k, {_channel: k})
            return self._result(int(item_id), cand[:k], scores[:k], 0, False, channels, counts)
        select = self._selector(row, exclude_categories, exclude_items, category_view)
        kept, valid = select(cand)
        if len(kept) < k and m.index is not None and int(valid.sum()) < self.num_items - 1:
            cand, scores, kept, valid = self._refill(m, row, k, select)
        if len(kept) >= k:
            kept = kept[:k]
            last = int(kept[-1]) + 1
            filtered = int(valid[:last].sum()) - k
            exhausted = False
        else:
            filtered = int(valid.sum()) - len(kept)
            exhausted = True
        # answering a one-channel mix: every candidate comes from that channel
        channels, counts = (
            (None, None) if _channel is None else ([[_channel]] * len(kept), {_channel: len(kept)})
        )
        return self._result(int(item_id), cand[kept], scores[kept], filtered, exhausted, channels, counts)

    def _own_left_out(self, m: _Mode, row: int, category_view: str) -> int | None:
        """The trigger's category when mode ``m``'s map leaves it out of ``row`` (``excludes_own``, the
        diversity map): the mode then never answers it, refills included; else None."""
        if m.excludes_own != category_view:
            return None
        own = int(self._attributes[category_view][row])
        return own if own >= 0 else None

    def _selector(
        self,
        row: int,
        exclude_categories: Collection[int],
        exclude_items: Collection[int],
        category_view: str,
    ) -> Callable[[IntArray], tuple[IntArray, IntArray]]:
        """The exclusion filter of a lookup for trigger ``row``: ``select(cand)`` gives the positions in
        ``cand`` that survive and the valid (not padding, not the trigger) mask."""
        categories: npt.NDArray[np.int64] | None = None
        excl_cats = np.asarray(list(exclude_categories), dtype=np.int64)
        if excl_cats.size:
            if category_view not in self._attributes:
                raise UnknownView(category_view, list(self._attributes))
            categories = self._attributes[category_view]
        excl_rows = self._rows(np.asarray(list(exclude_items), dtype=np.int64)) if exclude_items else None
        if excl_rows is not None:
            excl_rows = excl_rows[excl_rows >= 0]

        def select(cand: IntArray) -> tuple[IntArray, IntArray]:
            """Positions in ``cand`` that survive, and the valid (not padding, not self) mask."""
            valid = (cand >= 0) & (cand != row)
            if categories is None and (excl_rows is None or not excl_rows.size):
                return np.flatnonzero(valid), valid  # no exclusions: the common general-mode lookup
            keep = valid.copy()
            if categories is not None:
                # padding (-1) reads the last row's category: harmless, ``valid`` drops those positions
                cats = categories[cand]
                if excl_cats.size <= SMALL_EXCLUSION:  # one compare per category beats np.isin's sort
                    for category in excl_cats:
                        keep &= cats != category
                else:
                    keep &= ~np.isin(cats, excl_cats)
            if excl_rows is not None and excl_rows.size:
                keep &= ~np.isin(cand, excl_rows)
            return np.flatnonzero(keep), valid

        return select

    def _refill(
        self, m: _Mode, row: int, k: int, select: Any
    ) -> tuple[IntArray, Float32Array, IntArray, IntArray]:
        """Search FAISS with a breadth growing x``GROWTH`` per round until ``k`` survive or the whole
        catalogue was searched (last round exhaustive: every IVF list, a beam as wide as the catalogue)."""
        n = self.num_items
        width = min(n - 1, GROWTH * max(m.width, k))
        rows = np.array([row], dtype=np.int64)
        while True:
            exhaustive = width >= n - 1
            ids, scores = m.search(rows, width, exhaustive)
            cand, sc = ids[0], scores[0]
            kept, valid = select(cand)
            if len(kept) >= k or exhaustive:
                return cand, sc, kept, valid
            width = min(n - 1, width * GROWTH)

    def _result(
        self,
        trigger: int,
        rows: IntArray,
        scores: npt.NDArray[np.floating[Any]],
        filtered: int,
        exhausted: bool,
        channels: list[list[str]] | None = None,
        channel_counts: dict[str, int] | None = None,
    ) -> NeighbourResult:
        return NeighbourResult(
            trigger=trigger,
            item_ids=self._items[rows].tolist(),
            scores=scores.tolist(),  # float16 / float32 rows give the same Python floats as via float64
            attributes={view: arr[rows].tolist() for view, arr in self._attributes.items()},
            exhausted=exhausted,
            filtered_out=filtered,
            channels=channels,
            channel_counts=channel_counts,
            cold=self._cold[rows].tolist() if self._cold is not None else None,
        )

    def mix_for(self, mix: Mapping[str, float] | None) -> dict[str, float]:
        """``mix`` (None: this version's ``default_mix``) checked against the channels it holds; raises
        ``ValueError`` for a malformed mix, ``UnknownChannel`` for a channel this version lacks."""
        chosen = self.default_mix if mix is None else check_mix(mix)
        missing = [c for c in chosen if c not in self.channels]
        if missing:
            raise UnknownChannel(self.version, missing, list(self.channels))
        return chosen

    def _scratch(self) -> FuseScratch:
        """This thread's fusion buffers (created on first use: a version serving no mix pays nothing)."""
        scratch: FuseScratch | None = getattr(self._local, "scratch", None)
        if scratch is None:
            scratch = self._local.scratch = FuseScratch(self.num_items)
        return scratch

    def _channel(self, name: str) -> _Mode:
        if name in self._channel_maps:
            return self._channel_maps[name]
        return self._mode(CHANNEL_MODES[name])

    def _ranked(self, m: _Mode, row: int, depth: int) -> npt.NDArray[np.integer[Any]]:
        """Channel ``m``'s top-``depth`` rows for trigger ``row`` (padding and the trigger dropped): the
        map when it is deep enough (or all there is), else a FAISS search."""
        if depth <= m.width or m.index is None:
            ranked = channel_row(m.topn_ids, row)[:depth]  # int32 rows of the map, no copy
        else:
            ranked = m.search(np.array([row], dtype=np.int64), depth)[0][0]
        return ranked[(ranked >= 0) & (ranked != row)]

    @_reports_damage
    def mixed_neighbours(
        self,
        item_id: int,
        mix: Mapping[str, float] | None,
        k: int,
        *,
        exclude_categories: Collection[int] = (),
        exclude_items: Collection[int] = (),
        category_view: str = "category",
    ) -> NeighbourResult:
        """General-mode neighbours merged from the channels of ``mix`` (None: ``default_mix``) by the rule
        of ``index.channels``, with ``channels`` naming the channel(s) that listed each candidate.

        Every channel gives its top-``depth`` list (``depth`` = the larger of ``k`` and the widest map);
        exclusions apply after the merge, and while they leave fewer than ``k`` the depth grows
        x``GROWTH`` as long as a searchable channel has more to give, so fewer than ``k`` (``exhausted``)
        only when no candidate remains. Scores are the fused scores. Raises as ``neighbours`` does, plus
        ``UnknownChannel``.
        """
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
            raise ValueError(f"k: must be a positive int, got {k!r}")
        k = int(k)
        chosen = self.mix_for(mix)
        names = [c for c, w in chosen.items() if w > 0]
        if names == ["m2grl"]:  # one channel: the plain lookup, same ranking and scores
            return self.neighbours(
                item_id, CHANNEL_MODES["m2grl"], k, exclude_categories=exclude_categories,
                exclude_items=exclude_items, category_view=category_view, _channel="m2grl",
            )  # fmt: skip
        maps = [self._channel(c) for c in names]
        weights = [chosen[c] for c in names]
        row = self._row(item_id)
        select = None  # the exclusion filter, built only when a lookup needs it
        n = self.num_items
        widest = max(m.width for m in maps)
        depth = min(max(k, widest), max(n - 1, 1))
        names_key = tuple(names)
        fused = self._fused
        if (
            fused is not None
            and k <= min(fused.topn, widest)
            and fused.depth == widest
            and chosen == fused.mix
        ):
            # the default mix, precomputed at this very depth: one map row, as a single-mode lookup
            cand = fused.ids[row]
            if not exclude_categories and not exclude_items and _leading_k(cand, row, k):
                channels, counts = source_lists(fused.sources[row][:k], names_key)
                return self._result(int(item_id), cand[:k], fused.scores[row][:k], 0, False, channels, counts)
            select = self._selector(row, exclude_categories, exclude_items, category_view)
            kept, valid = select(cand)
            if len(kept) >= k:
                kept = kept[:k]
                filtered = int(valid[: int(kept[-1]) + 1].sum()) - k
                channels, counts = source_lists(fused.sources[row][kept], names_key)
                return self._result(
                    int(item_id), cand[kept], fused.scores[row][kept], filtered, False, channels, counts
                )
        select = select or self._selector(row, exclude_categories, exclude_items, category_view)
        while True:
            lists = [self._ranked(m, row, depth) for m in maps]
            merged = fuse(lists, weights, self._scratch())
            kept, valid = select(merged.rows)
            more = depth < n - 1 and any(
                m.index is not None and len(r) >= depth for m, r in zip(maps, lists, strict=True)
            )
            if len(kept) >= k or not more:
                break
            depth = min(n - 1, depth * GROWTH)
        if len(kept) >= k:
            kept = kept[:k]
            filtered = int(valid[: int(kept[-1]) + 1].sum()) - k
            exhausted = False
        else:
            filtered = int(valid.sum()) - len(kept)
            exhausted = True
        channels, counts = source_lists(merged.sources[kept], names_key)
        return self._result(
            int(item_id), merged.rows[kept], merged.scores[kept], filtered, exhausted, channels, counts
        )

    def batch_neighbours(
        self, item_ids: npt.ArrayLike, mode: str, k: int, *, mix: Mapping[str, float] | None = None
    ) -> tuple[IntArray, Float32Array]:
        """Top-``k`` neighbours of each trigger (trigger excluded, no other exclusion), vectorised.

        Returns original ids int64 ``[n, k]`` (``-1`` padded) and float32 scores (``-inf`` where padded).
        Unknown triggers give all ``-1`` rows. Reads the map when ``k`` fits in it; otherwise searches
        FAISS (map-only indexes pad). With a ``mix`` (general mode only), each trigger is answered by
        :meth:`mixed_neighbours`, the service's own merge.
        """
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
            raise ValueError(f"k: must be a positive int, got {k!r}")
        k = int(k)
        if mix is not None:
            if mode != CHANNEL_MODES["m2grl"]:
                raise UnknownMode(f"{mode} with a channel mix", [CHANNEL_MODES["m2grl"]])
            return self._batch_mixed(item_ids, mix, k)
        m = self._mode(mode)
        rows = self._rows(item_ids)
        n = len(rows)
        out_ids = np.full((n, k), -1, dtype=np.int64)
        out_scores = np.full((n, k), -np.inf, dtype=np.float32)
        known = np.flatnonzero(rows >= 0)
        if known.size == 0:
            return out_ids, out_scores
        q = rows[known]
        if k <= m.width or m.index is None:
            w = min(k, m.width)
            r = np.asarray(m.topn_ids[q, :w], dtype=np.int64)
            s = np.asarray(m.topn_scores[q, :w], dtype=np.float32)
            # map-only sources may list the trigger itself: drop it and shift the row left
            is_self = r == q[:, None]
            if is_self.any():
                r, s = compact_rows(r, s, is_self | (r < 0))
        else:
            r, s = m.search(q, min(k, self.num_items - 1))
            w = r.shape[1]
        valid = r >= 0
        out_ids[known, :w] = np.where(valid, self._items[np.where(valid, r, 0)], -1)
        out_scores[known, :w] = np.where(valid, s, -np.inf)
        return out_ids, out_scores

    def _batch_mixed(
        self, item_ids: npt.ArrayLike, mix: Mapping[str, float], k: int
    ) -> tuple[IntArray, Float32Array]:
        triggers = np.asarray(item_ids, dtype=np.int64).ravel()
        out_ids = np.full((len(triggers), k), -1, dtype=np.int64)
        out_scores = np.full((len(triggers), k), -np.inf, dtype=np.float32)
        known = self._rows(triggers) >= 0
        for i in np.flatnonzero(known):
            result = self.mixed_neighbours(int(triggers[i]), mix, k)
            out_ids[i, : len(result)] = result.item_ids
            out_scores[i, : len(result)] = result.scores
        return out_ids, out_scores

    def close(self) -> None:
        """Drop the maps and FAISS indexes (memory maps close when no array refers to them)."""
        with self._lock:
            self._modes = None

    def __repr__(self) -> str:
        return f"ServingIndex(version={self.version!r}, items={self.num_items}, modes={self.modes})"


# ---------------------------------------------------------------------- loading helpers


def _load_array(
    path: Path, name: str, mmap_mode: Literal["r"] | None, dtype: type, shape: tuple[int, ...]
) -> Any:
    rel = f"{path.parent.name}/{path.name}" if path.parent.name != name else path.name
    try:
        arr = np.load(path, mmap_mode=mmap_mode, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise InvalidIndexVersion(f"{name}: {rel} unreadable: {exc}") from exc
    if arr.dtype != np.dtype(dtype):
        raise InvalidIndexVersion(f"{name}: {rel} has dtype {arr.dtype}, expected {np.dtype(dtype)}")
    if len(shape) != arr.ndim or any(
        want not in (-1, got) for want, got in zip(shape, arr.shape, strict=True)
    ):
        raise InvalidIndexVersion(f"{name}: {rel} has shape {arr.shape}, expected {shape} (-1 = any)")
    # a plain ndarray view of the same mapping: np.memmap's Python-level __getitem__ and
    # __array_finalize__ cost ~3 us per slice on the request path; the view keeps the map open
    return arr.view(np.ndarray) if isinstance(arr, np.memmap) else arr


def _map_mode(ids: npt.ArrayLike, scores: npt.ArrayLike, n: int, what: str, shared: bool = False) -> _Mode:
    """A map-only mode from row ids ``[n, T]`` (``-1`` padded) and scores, checked; with ``shared`` (a
    channel) also one list ``[1, T]`` read by every trigger."""
    m_ids = np.asarray(ids)
    m_scores = np.asarray(scores, dtype=np.float32)
    if m_ids.ndim != 2 or m_ids.shape != m_scores.shape or m_ids.shape[0] not in ((1, n) if shared else (n,)):
        shapes = f"({n}, T) or (1, T)" if shared else f"({n}, T)"
        raise ValueError(f"{what}: shape {m_ids.shape} (scores {m_scores.shape}), expected {shapes} for both")
    if m_ids.size and (int(m_ids.min()) < -1 or int(m_ids.max()) >= n):
        raise ValueError(f"{what}: row indices must lie in [-1, {n})")
    return _Mode("ip", m_ids.astype(np.int32), m_scores)


def _load_map(
    layout: IndexVersionLayout,
    name: str,
    mode: str,
    n: int,
    topn: int,
    mmap_mode: Literal["r"] | None,
    rows: int | None = None,
) -> tuple[npt.NDArray[np.int32], npt.NDArray[Any]]:
    """A mode's or channel's top-N map (ids int32, scores float16) of ``rows`` rows (default ``n``; 1 for
    a shared list), checked: entries are rows of the ``n`` items or padding, scores finite."""
    rows = n if rows is None else rows
    ids = _load_array(layout.topn_ids(mode), name, mmap_mode, np.int32, (rows, topn))
    scores = _load_array(layout.topn_scores(mode), name, mmap_mode, np.float16, (rows, topn))
    for start in range(0, rows, _SCAN_ROWS):
        block = np.asarray(ids[start : start + _SCAN_ROWS])
        if block.size and (int(block.min()) < -1 or int(block.max()) >= n):
            raise InvalidIndexVersion(f"{name}: {mode}/topn_ids has row indices outside [-1, {n})")
        sblock = np.asarray(scores[start : start + _SCAN_ROWS])
        if not np.isfinite(sblock[block >= 0]).all():
            raise InvalidIndexVersion(f"{name}: {mode}/topn_scores has NaN or infinite scores")
    return ids, scores


def _in_memory_manifest(
    version: str, n: int, views: list[str], modes: dict[str, dict[str, Any]]
) -> IndexManifest:
    """The manifest of an index built in memory (evaluation): no files to verify, nothing published."""
    return IndexManifest(
        format=INDEX_FORMAT, version=version, in_memory=True, num_items=n, attribute_views=views, modes=modes
    )


def _load_fused(
    layout: IndexVersionLayout, name: str, spec: Any, n: int, mmap_mode: Literal["r"] | None
) -> _Fused | None:
    if not spec:
        return None
    try:
        mix = check_mix(spec["mix"], f"{name}: fused.mix")
        depth, topn = int(spec["depth"]), int(spec["topn"])
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidIndexVersion(f"{name}: manifest entry 'fused' malformed: {exc}") from exc
    ids = _load_array(layout.topn_ids(FUSED), name, mmap_mode, np.int32, (n, topn))
    scores = _load_array(layout.topn_scores(FUSED), name, mmap_mode, np.float32, (n, topn))
    sources = _load_array(layout.topn_sources(FUSED), name, mmap_mode, np.uint8, (n, topn))
    for start in range(0, n, _SCAN_ROWS):
        block = np.asarray(ids[start : start + _SCAN_ROWS])
        if block.size and (int(block.min()) < -1 or int(block.max()) >= n):
            raise InvalidIndexVersion(f"{name}: {FUSED}/topn_ids has row indices outside [-1, {n})")
    return _Fused(mix, depth, ids, scores, sources)


def _load_cold(layout: IndexVersionLayout, name: str, spec: Any, n: int) -> npt.NDArray[np.bool_] | None:
    """The cold marker the manifest announces (read into memory: one byte per item), checked against the
    count the manifest records; None for a version without cold items."""
    if spec is None:
        return None
    try:
        expected = int(spec["items"])
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidIndexVersion(f"{name}: manifest entry 'cold' malformed: {exc}") from exc
    marker = np.asarray(_load_array(layout.cold, name, None, np.bool_, (n,)))
    if int(marker.sum()) != expected:
        raise InvalidIndexVersion(
            f"{name}: cold.npy marks {int(marker.sum())} items, the manifest says {expected}"
        )
    return marker


def _load_mode(
    layout: IndexVersionLayout, name: str, mode: str, spec: Any, n: int, mmap_mode: Literal["r"] | None
) -> _Mode:
    try:
        metric = spec["metric"]
        dim = int(spec["dim"])
        topn = int(spec["topn"])
        kind = get_index_type(str(spec["index_type"]))
        params = IndexParams(**spec.get("params", {}))
        excludes_own = spec.get("excludes_own")
        if excludes_own is not None and not isinstance(excludes_own, str):
            raise TypeError(f"excludes_own must be a view name, got {excludes_own!r}")
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidIndexVersion(f"{name}: manifest entry of mode {mode!r} malformed: {exc}") from exc
    if metric not in METRICS:
        raise InvalidIndexVersion(f"{name}: mode {mode!r} has unknown metric {metric!r}")
    ids, scores = _load_map(layout, name, mode, n, topn, mmap_mode)
    path = layout.faiss_index(mode)
    try:
        index = faiss.read_index(str(path))
    except RuntimeError as exc:
        raise InvalidIndexVersion(f"{name}: {mode}/index.faiss unreadable (truncated?): {exc}") from exc
    if int(index.d) != dim:
        raise InvalidIndexVersion(
            f"{name}: {mode}/index.faiss has dimension {index.d}, the manifest says {dim}"
        )
    if int(index.ntotal) != n:
        raise InvalidIndexVersion(
            f"{name}: {mode}/index.faiss holds {index.ntotal} vectors but items.npy has {n} ids"
        )
    if int(index.metric_type) != faiss_metric(metric):
        raise InvalidIndexVersion(f"{name}: {mode}/index.faiss metric does not match {metric!r}")
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is not None:
        ivf.make_direct_map()  # reconstruct() of the trigger's vector for refill searches
    if n:
        sample = np.unique(np.linspace(0, n - 1, num=min(n, 64)).astype(np.int64))
        vecs = index.reconstruct_batch(sample)
        if not np.isfinite(vecs).all():
            raise InvalidIndexVersion(f"{name}: {mode}/index.faiss holds NaN or infinite vectors")
    return _Mode(metric, ids, scores, index, kind, params, excludes_own=excludes_own)


__all__ = ["ServingIndex", "to_scores"]
