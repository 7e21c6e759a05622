"""Index versions in memory and their hot reload.

``IndexManager`` holds an immutable ``Served`` snapshot (CURRENT's index plus the versions pinned by
A/B variants). A request reads ``manager.served`` once and keeps that reference, so it finishes on the
version it started with even if a reload swaps the snapshot meanwhile; the old index is freed when
its last request drops it (no explicit close while requests may still hold it).

A reload loads the new version in a worker thread beside the old one, validates it (manifest,
modes, category view, one smoke lookup per mode) and only then swaps; a bad version is refused,
logged and counted, and the old one keeps serving. The same version is not retried until CURRENT
changes or an admin forces it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from app.metrics import Metrics
from core.layout import IndexRoot, IndexVersionLayout
from index.errors import IndexNotReady, InvalidIndexVersion
from index.manifest import verify_files
from index.publish import check_version_name, current_version, list_versions
from index.serving import ServingIndex

log = logging.getLogger("m2grl.reload")

Loader = Callable[[Path], ServingIndex]


def load_serving_index(version_dir: Path) -> ServingIndex:
    """Memory-mapped ``ServingIndex`` (raises ``InvalidIndexVersion``)."""
    return ServingIndex.load(version_dir, mmap=True)


def serving_loader(private_max_bytes: int) -> Loader:
    """The service's loader: a version whose arrays (``*.npy``) total at most ``private_max_bytes`` is read
    into private memory, so that a file changed or truncated on disk cannot reach its lookups (a truncated
    memory-mapped file kills the process with SIGBUS on the next read); a larger one is memory-mapped and
    re-verified by ``IndexManager.verify``."""

    def load(version_dir: Path) -> ServingIndex:
        size = sum(p.stat().st_size for p in Path(version_dir).rglob("*.npy"))
        return ServingIndex.load(version_dir, mmap=size > private_max_bytes)

    return load


def build_time(index: ServingIndex, layout: IndexVersionLayout) -> float | None:
    """Unix time the version was built: from its manifest, else the completion marker's mtime."""
    built = index.manifest.built_at_s()
    if built is not None:
        return built
    with contextlib.suppress(OSError):
        return layout.complete_marker.stat().st_mtime
    return None


def validate(
    index: ServingIndex,
    layout: IndexVersionLayout,
    category_view: str,
    channels: frozenset[str] = frozenset(),
) -> None:
    """Checks beyond ``ServingIndex.load``: what this service needs to answer (the ``channels`` its
    variants name included). Raises ``InvalidIndexVersion`` naming the problem."""
    missing = sorted(channels - set(index.channels))
    if missing:
        raise InvalidIndexVersion(
            f"{layout.root.name}: holds no channel {missing} that a variant's mix names "
            f"(available: {list(index.channels)}; build it with --channels)"
        )
    if not index.modes:
        raise InvalidIndexVersion(f"{layout.root.name}: serves no mode")
    if index.num_items <= 0:
        raise InvalidIndexVersion(f"{layout.root.name}: has no items")
    if category_view not in index.attribute_views:
        raise InvalidIndexVersion(
            f"{layout.root.name}: category view {category_view!r} not among attribute views "
            f"{list(index.attribute_views)} (set M2GRL_CATEGORY_VIEW)"
        )
    items = np.load(layout.items, mmap_mode="r")
    probe = int(items[0])
    for mode in index.modes:
        result = index.neighbours(probe, mode, 1)
        if len(result) == 0 and index.num_items > 1:
            raise InvalidIndexVersion(f"{layout.root.name}: smoke lookup in mode {mode!r} returned nothing")


@dataclass(frozen=True)
class Served:
    """An immutable set of loaded versions; requests hold one for their whole life."""

    current: ServingIndex | None = None
    pinned: Mapping[str, ServingIndex] = field(default_factory=dict)

    def get(self, version: str | None) -> ServingIndex:
        """The index for a variant's pinned ``version`` (None = CURRENT); ``IndexNotReady`` if absent."""
        index = self.current if version is None else self.pinned.get(version)
        if index is None:
            what = "CURRENT" if version is None else f"pinned version {version!r}"
            raise IndexNotReady(f"{what} is not loaded")
        return index

    def ready(self, pinned_versions: tuple[str, ...]) -> bool:
        return self.current is not None and all(v in self.pinned for v in pinned_versions)


@dataclass(frozen=True)
class ReloadOutcome:
    """Result of one reload attempt: ``success``, ``unchanged`` or ``failure`` (with ``detail``)."""

    result: str
    version: str | None
    previous: str | None
    detail: str = ""


class IndexManager:
    """Loads, validates and atomically swaps index versions under ``index_root``.

    Beyond the swap: when the version CURRENT names cannot be served and nothing serves CURRENT's place
    (start-up, or a served version found damaged), the newest valid version is served instead, logged
    and shown in ``fallback`` (``/readyz``) and ``m2grl_index_fallback``; pinned versions that cannot be
    loaded are kept in ``pin_errors`` (not ready); served versions whose files change on disk are found
    by ``verify`` (sizes every poll, checksums every ``verify_s``) or by a lookup (``DamagedIndex``), and
    a memory-mapped one is dropped (``mark_damaged``).
    """

    def __init__(
        self,
        index_root: Path,
        *,
        category_view: str,
        pinned_versions: tuple[str, ...],
        metrics: Metrics,
        loader: Loader = load_serving_index,
        required_channels: Mapping[str | None, frozenset[str]] | None = None,
        verify_s: float = 300.0,
    ) -> None:
        self.root = IndexRoot(Path(index_root))
        self.category_view = category_view
        self.pinned_versions = pinned_versions
        self.required_channels = dict(required_channels or {})
        self.metrics = metrics
        self.loader = loader
        self.verify_s = verify_s
        self.served = Served()
        #: the last problem with the version CURRENT names (None once it serves)
        self.current_error: str | None = None
        #: pinned versions that cannot be loaded, with the reason
        self.pin_errors: dict[str, str] = {}
        #: ``{"version", "current", "reason"}`` while an older version serves in CURRENT's place
        self.fallback: dict[str, str] | None = None
        #: versions dropped (or, loaded privately, still served) because their files changed on disk
        self.damaged: dict[str, str] = {}
        self._refused: set[str] = set()
        self._lock = asyncio.Lock()
        self._next_full_verify = time.monotonic() + verify_s

    @property
    def version(self) -> str | None:
        current = self.served.current
        return None if current is None else current.version

    @property
    def ready(self) -> bool:
        return self.served.ready(self.pinned_versions)

    @property
    def last_error(self) -> str | None:
        """What keeps the service from serving as configured: CURRENT's problem, else a missing pin."""
        if self.current_error is not None:
            return self.current_error
        for version, reason in sorted(self.pin_errors.items()):
            return f"pinned {version}: {reason}"
        return None

    def _load(self, version: str, *, pinned: bool = False) -> ServingIndex:
        """Load and validate one version as CURRENT or as a ``pinned`` one (blocking; run in a thread)."""
        check_version_name(version)  # CURRENT is a plain file: a name like "../x" must not leave the root
        layout = self.root.version(version)
        if not layout.root.is_dir():
            raise InvalidIndexVersion(f"{version}: no folder {layout.root} (never built, removed or pruned)")
        if not layout.complete_marker.exists():
            raise InvalidIndexVersion(f"{version}: no {layout.complete_marker.name} marker (incomplete)")
        index = self.loader(layout.root)
        try:
            channels = self.required_channels.get(version if pinned else None, frozenset())
            validate(index, layout, self.category_view, channels)
        except Exception:
            index.close()
            raise
        return index

    async def reload(self, *, force: bool = False) -> ReloadOutcome:
        """Load CURRENT (and missing pinned versions) if it changed; swap only after validation."""
        async with self._lock:
            await self._load_pinned()
            previous = self.version
            target = current_version(self.root.root)
            if target is None:
                return ReloadOutcome("unchanged", None, previous, "CURRENT is missing")
            if target == previous:
                if self.fallback is not None:  # CURRENT now names the version serving in its place
                    self._end_fallback(target)
                return ReloadOutcome("unchanged", previous, previous)
            if target in self._refused and not force:
                await self._fall_back(target)
                return ReloadOutcome("unchanged", previous, previous)
            start = time.perf_counter()
            try:
                index = await asyncio.to_thread(self._load, target)
            except Exception as exc:  # any load problem refuses the version: the old one keeps serving
                self._refused.add(target)
                self.current_error = f"{type(exc).__name__}: {exc}"
                self.metrics.index_reloads.labels("failure").inc()
                log.error(
                    "index version %s refused, still serving %s: %s", target, previous, self.current_error
                )
                outcome = ReloadOutcome("failure", target, previous, self.current_error)
                await self._fall_back(target)
                return outcome
            self._refused.discard(target)
            self.damaged.pop(target, None)
            self.served = Served(index, self.served.pinned)
            self.current_error = None
            self._end_fallback(target)
            self.metrics.index_reloads.labels("success").inc()
            self._publish_gauges(index, self.root.version(target))
            log.info("serving index version %s (was %s), loaded in %.2fs", target, previous,
                     time.perf_counter() - start)  # fmt: skip
            return ReloadOutcome("success", target, previous)

    async def _fall_back(self, target: str) -> None:
        """When nothing serves in CURRENT's place, serve the newest valid version other than ``target``
        (tried once each; never silently: logged at WARNING, ``fallback`` and the gauge set)."""
        if self.served.current is not None:
            return
        for version in reversed(list_versions(self.root.root)):
            if version == target or version in self._refused:
                continue
            try:
                index = await asyncio.to_thread(self._load, version)
            except Exception as exc:
                self._refused.add(version)
                log.warning("fallback candidate %s cannot be served either: %s", version, exc)
                continue
            reason = self.current_error or f"{target} cannot be served"
            self.served = Served(index, self.served.pinned)
            self.fallback = {"version": version, "current": target, "reason": reason}
            self.metrics.index_fallback.set(1)
            self._publish_gauges(index, self.root.version(version))
            log.warning(
                "CURRENT names %s, which cannot be served (%s): serving the newest valid version %s instead "
                "until CURRENT changes", target, reason, version,
            )  # fmt: skip
            return

    def _end_fallback(self, version: str) -> None:
        if self.fallback is not None:
            log.warning("fallback over: serving %s, the version CURRENT names", version)
            self.fallback = None
            self.metrics.index_fallback.set(0)

    async def _load_pinned(self) -> None:
        missing = [v for v in self.pinned_versions if v not in self.served.pinned]
        for version in missing:
            try:
                index = await asyncio.to_thread(self._load, version, pinned=True)
            except Exception as exc:
                if version not in self._refused:
                    self.metrics.index_reloads.labels("failure").inc()
                    log.error("pinned index version %s cannot be served (not ready): %s", version, exc)
                self._refused.add(version)
                self.pin_errors[version] = f"{type(exc).__name__}: {exc}"
                continue
            self._refused.discard(version)
            self.pin_errors.pop(version, None)
            self.served = Served(self.served.current, {**self.served.pinned, version: index})
        self.metrics.index_pins_missing.set(len(self.pin_errors))

    def mark_damaged(self, version: str, detail: str) -> None:
        """Drop ``version`` from the served set because its mapped files changed on disk (requests on it
        get 503 until a valid version serves; CURRENT falls back at the next poll). Logged once."""
        if version in self.damaged:
            return
        self.damaged[version] = detail
        self._refused.add(version)
        self.metrics.index_damaged.inc()
        current = self.served.current
        pinned = {v: i for v, i in self.served.pinned.items() if v != version}
        if current is not None and current.version == version:
            current = None
            self.current_error = f"DamagedIndex: {detail}"
            if self.fallback is not None:
                self.fallback = None
                self.metrics.index_fallback.set(0)
        if version in self.served.pinned:
            self.pin_errors[version] = f"DamagedIndex: {detail}"
            self.metrics.index_pins_missing.set(len(self.pin_errors))
        self.served = Served(current, pinned)
        log.error("index version %s dropped, its files changed on disk: %s", version, detail)

    async def verify(self, *, full: bool) -> None:
        """Re-check the served versions' files against their manifests: sizes (cheap), and every checksum
        when ``full``. A memory-mapped version that fails is dropped (``mark_damaged``); a privately
        loaded one keeps serving its copy (the change is logged and shown in ``damaged``)."""
        served = self.served
        indexes = [i for i in (served.current, *served.pinned.values()) if i is not None]
        for index in indexes:
            if index.version in self.damaged or index.manifest.in_memory:
                continue
            root = self.root.version(index.version).root
            files = index.manifest.files
            try:
                await asyncio.to_thread(verify_files, root, files, [], full=full, sizes_only=not full)
            except InvalidIndexVersion as exc:
                if index.mapped:
                    self.mark_damaged(index.version, str(exc))
                else:
                    self.damaged[index.version] = str(exc)
                    log.error(
                        "index version %s changed on disk (%s); this worker keeps serving the copy it "
                        "loaded, new workers will refuse it", index.version, exc,
                    )  # fmt: skip

    def _publish_gauges(self, index: ServingIndex, layout: IndexVersionLayout) -> None:
        self.metrics.set_index(
            version=index.version,
            model_version=index.manifest.model_version,
            items_by_mode=dict.fromkeys(index.modes, index.num_items),
            built_at=build_time(index, layout),
        )

    async def poll_forever(self, interval_s: float) -> None:
        """Background task until cancelled: every ``interval_s`` seconds check CURRENT and the served
        files' sizes; every ``verify_s`` seconds their checksums too."""
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.reload()
                full = time.monotonic() >= self._next_full_verify
                if full:
                    self._next_full_verify = time.monotonic() + self.verify_s
                await self.verify(full=full)
            except Exception:  # the poller must survive anything; each failure is logged
                log.exception("index poll failed")
