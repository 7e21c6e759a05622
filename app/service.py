"""Retrieval logic behind the routes: exclusion rules, strategy -> index mode, answer shaping.

Exclusion rules:
- ``diversity`` always excludes the trigger's own category and the user's recent categories;
- ``general`` excludes the user's recent categories only when asked (``exclude_recent=true``);
- explicit ``exclude_categories`` are always excluded.
A variant's strategy decides how diversity is served: ``metric`` = the index's diversity mode (metric
model of section 6.1), ``filter`` = the general mode with the same category filters.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from anyio import CapacityLimiter

from app.ab import Assigner
from app.ids import recent_dense
from app.metrics import Metrics
from app.reload import IndexManager
from app.settings import Settings, VariantConfig
from app.stores import EMPTY, Recent, RecentStore, StoreUnavailable
from core.types import NeighbourResult
from index.labels import VersionLabels
from index.serving import ServingIndex

log = logging.getLogger("m2grl.app")


class ThrottledLog:
    """A warning logged at most once per ``interval_s`` seconds, with the count of the repeats it held
    back (an outage answered 3,600 times in 16 s is one line per interval, not 3,600)."""

    def __init__(self, logger: logging.Logger, interval_s: float = 10.0) -> None:
        self.logger = logger
        self.interval_s = interval_s
        self._next = 0.0
        self._held = 0

    def warn(self, message: str) -> None:
        now = time.monotonic()
        if now < self._next:
            self._held += 1
            return
        if self._held:
            message = f"{message} ({self._held} more since the last report)"
        self.logger.warning(message)
        self._held = 0
        self._next = now + self.interval_s


@dataclass(frozen=True)
class AppContext:
    """Everything a request needs, built once in the lifespan and kept in ``app.state.ctx``."""

    settings: Settings
    manager: IndexManager
    store: RecentStore
    metrics: Metrics
    assigner: Assigner
    #: bounds the threads running heavy lookups off the event loop (``Settings.batch_threads``)
    heavy: CapacityLimiter
    #: the recent store's outage warnings
    outage_log: ThrottledLog = field(default_factory=lambda: ThrottledLog(log))


def index_mode(mode: str, variant: VariantConfig) -> str:
    """Index mode that serves ``mode`` for ``variant`` (diversity via filter = general index)."""
    if mode == "diversity" and variant.strategy == "filter":
        return "general"
    return mode


def needs_recent(mode: str, exclude_recent: bool) -> bool:
    return mode == "diversity" or exclude_recent


async def recent_or_empty(
    ctx: AppContext, user_id: str | None, labels: VersionLabels | None = None
) -> Recent[int]:
    """The user's recent interactions in the served version's dense ids (read from the store's labelled
    space when the version has ``labels``); on a store failure, nothing (answer with explicit exclusions
    only): counted in ``m2grl_recent_store_errors_total`` and ``m2grl_degraded_answers_total``
    (not an error: the answer is a 200), logged at most once per ``ctx.outage_log.interval_s``."""
    if not user_id:
        return EMPTY
    try:
        if labels is None:
            return await ctx.store.recent(user_id)
        found = await ctx.store.recent(user_id, labelled=True)
    except StoreUnavailable as exc:
        ctx.metrics.recent_store_errors.labels(ctx.store.name).inc()
        ctx.metrics.degraded_answers.labels("recent_store").inc()
        ctx.outage_log.warn(f"recent store unavailable, answering without recent categories: {exc}")
        return EMPTY
    return recent_dense(labels, ctx.settings.category_view, found)


def category_of(index: ServingIndex, item_id: int, category_view: str) -> int:
    """The item's category (``-1`` unknown); raises ``UnknownItem``."""
    return index.attribute_of(item_id, category_view)


def exclusions(
    *,
    mode: str,
    explicit: Iterable[int],
    recent: Recent[int],
    exclude_recent: bool,
    own_categories: Iterable[int],
) -> frozenset[int]:
    """Categories to exclude under the rules in the module docstring (``-1`` never excluded)."""
    out = set(explicit)
    if needs_recent(mode, exclude_recent):
        out |= recent.categories
    if mode == "diversity":
        out |= set(own_categories)
    out.discard(-1)
    return frozenset(out)


def lookup(
    index: ServingIndex,
    item_id: int,
    mode: str,
    variant: VariantConfig,
    k: int,
    *,
    excluded: Iterable[int],
    category_view: str,
    exclude_items: Iterable[int] = (),
) -> NeighbourResult:
    """One trigger's candidates as ``variant`` serves ``mode``: general mode merges the variant's
    channel mix (the version's default mix when it names none), diversity mode reads its index mode."""
    if mode == "general":
        return index.mixed_neighbours(
            item_id, variant.channels, k, exclude_categories=tuple(excluded),
            exclude_items=tuple(exclude_items), category_view=category_view,
        )  # fmt: skip
    return index.neighbours(
        item_id, index_mode(mode, variant), k, exclude_categories=tuple(excluded),
        exclude_items=tuple(exclude_items), category_view=category_view,
    )  # fmt: skip


def observe(
    ctx: AppContext, mode: str, variant: str, returned: int, filtered: int, channels: Mapping[str, int] | None
) -> None:
    """Count an answer's candidates per mode and variant, and per channel (``channels``: candidates per
    channel, general mode; None when not merged)."""
    ctx.metrics.observe_candidates(mode, variant, returned, filtered)
    if channels:
        ctx.metrics.observe_channels(variant, channels)


def merge_candidates(results: Sequence[NeighbourResult], k: int) -> list[dict[str, Any]]:
    """Union of several triggers' candidates (as ``NeighbourResult.records()``), each item kept once at
    its best score, best ``k`` first."""
    best: dict[int, dict[str, Any]] = {}
    for result in results:
        for record in result.records():
            kept = best.get(record["item_id"])
            if kept is None or record["score"] > kept["score"]:
                best[record["item_id"]] = record
    return sorted(best.values(), key=lambda r: r["score"], reverse=True)[:k]
