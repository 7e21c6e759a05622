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
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from app.metrics import Metrics
from core.layout import IndexRoot, IndexVersionLayout
from index.errors import IndexNotReady, InvalidIndexVersion
from index.publish import check_version_name, current_version
from index.serving import ServingIndex

log = logging.getLogger("m2grl.reload")

Loader = Callable[[Path], ServingIndex]


def load_serving_index(version_dir: Path) -> ServingIndex:
    """Default loader: memory-mapped ``ServingIndex`` (raises ``InvalidIndexVersion``)."""
    return ServingIndex.load(version_dir, mmap=True)


def _manifest_field(manifest: Mapping[str, Any], *names: str) -> Any:
    for name in names:
        value: Any = manifest
        for part in name.split("."):
            value = value.get(part) if isinstance(value, Mapping) else None
        if value is not None:
            return value
    return None


def build_time(index: ServingIndex, layout: IndexVersionLayout) -> float | None:
    """Unix time the version was built: from its manifest, else the completion marker's mtime."""
    value = _manifest_field(index.manifest, "built_at", "created_at", "build.finished_at", "timestamp")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            return datetime.fromisoformat(value).timestamp()
    with contextlib.suppress(OSError):
        return layout.complete_marker.stat().st_mtime
    return None


def model_version(index: ServingIndex) -> str:
    value = _manifest_field(index.manifest, "model_version", "model.version", "model.name", "source_model")
    return str(value) if value is not None else "unknown"


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
            f"(available: {list(index.channels)}; build it with --cooc)"
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
    """Loads, validates and atomically swaps index versions under ``index_root``."""

    def __init__(
        self,
        index_root: Path,
        *,
        category_view: str,
        pinned_versions: tuple[str, ...],
        metrics: Metrics,
        loader: Loader = load_serving_index,
        required_channels: Mapping[str | None, frozenset[str]] | None = None,
    ) -> None:
        self.root = IndexRoot(Path(index_root))
        self.category_view = category_view
        self.pinned_versions = pinned_versions
        self.required_channels = dict(required_channels or {})
        self.metrics = metrics
        self.loader = loader
        self.served = Served()
        self.last_error: str | None = None
        self._refused: set[str] = set()
        self._lock = asyncio.Lock()

    @property
    def version(self) -> str | None:
        current = self.served.current
        return None if current is None else current.version

    @property
    def ready(self) -> bool:
        return self.served.ready(self.pinned_versions)

    def _load(self, version: str, *, pinned: bool = False) -> ServingIndex:
        """Load and validate one version as CURRENT or as a ``pinned`` one (blocking; run in a thread)."""
        check_version_name(version)  # CURRENT is a plain file: a name like "../x" must not leave the root
        layout = self.root.version(version)
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
            if target == previous or (target in self._refused and not force):
                return ReloadOutcome("unchanged", previous, previous)
            start = time.perf_counter()
            try:
                index = await asyncio.to_thread(self._load, target)
            except Exception as exc:  # any load problem refuses the version: the old one keeps serving
                self._refused.add(target)
                self.last_error = f"{type(exc).__name__}: {exc}"
                self.metrics.index_reloads.labels("failure").inc()
                log.error("index version %s refused, still serving %s: %s", target, previous, self.last_error)
                return ReloadOutcome("failure", target, previous, self.last_error)
            self._refused.discard(target)
            self.served = Served(index, self.served.pinned)
            self.last_error = None
            self.metrics.index_reloads.labels("success").inc()
            self._publish_gauges(index, self.root.version(target))
            log.info("serving index version %s (was %s), loaded in %.2fs", target, previous,
                     time.perf_counter() - start)  # fmt: skip
            return ReloadOutcome("success", target, previous)

    async def _load_pinned(self) -> None:
        missing = [v for v in self.pinned_versions if v not in self.served.pinned]
        for version in missing:
            try:
                index = await asyncio.to_thread(self._load, version, pinned=True)
            except Exception as exc:
                if version not in self._refused:
                    self.metrics.index_reloads.labels("failure").inc()
                    log.error("pinned index version %s cannot be served: %s", version, exc)
                self._refused.add(version)
                self.last_error = f"pinned {version}: {type(exc).__name__}: {exc}"
                continue
            self.served = Served(self.served.current, {**self.served.pinned, version: index})

    def _publish_gauges(self, index: ServingIndex, layout: IndexVersionLayout) -> None:
        self.metrics.set_index(
            version=index.version,
            model_version=model_version(index),
            items_by_mode=dict.fromkeys(index.modes, index.num_items),
            built_at=build_time(index, layout),
        )

    async def poll_forever(self, interval_s: float) -> None:
        """Background task: check CURRENT every ``interval_s`` seconds until cancelled."""
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.reload()
            except Exception:  # the poller must survive anything; each failure is logged
                log.exception("index poll failed")
