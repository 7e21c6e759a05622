"""Prometheus metrics of the service (names are a contract with the deployment's rules and dashboard).

One ``Metrics`` object per app, on its own ``CollectorRegistry`` so several apps can live in one
process (tests). With several uvicorn workers ``PROMETHEUS_MULTIPROC_DIR`` must be set: every worker
then writes its values to memory-mapped files there, and ``/metrics`` aggregates them with a
``MultiProcessCollector`` (counters and histograms summed; gauges by their ``multiprocess_mode``).
"""

from __future__ import annotations

import collections
import os
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

LATENCY_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.00075,
    0.001,
    0.0015,
    0.002,
    0.003,
    0.005,
    0.0075,
    0.01,
    0.015,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    1.0,
)
CANDIDATE_BUCKETS = (0, 1, 5, 10, 20, 50, 100, 200, 500, 1000)
METRICS_PATH = "/metrics"
UNMATCHED_ROUTE = "<unmatched>"


def channel_counts(channels: Iterable[Iterable[str]]) -> dict[str, int]:
    """Candidates per channel of per-candidate channel lists (a candidate listed by two channels counts
    for both), for answers merged from several lookups."""
    counts: dict[str, int] = {}
    for names, count in collections.Counter(map(tuple, channels)).items():
        for name in names:
            counts[name] = counts.get(name, 0) + count
    return counts


def multiprocess_dir() -> str | None:
    """The prometheus multiprocess directory when multiprocess mode is on."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class Metrics:
    """The service's metric families; ``render()`` produces the ``/metrics`` text."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.request_latency = Histogram(
            "m2grl_request_latency_seconds",
            "Request latency by route template, mode, variant and status.",
            ["route", "mode", "variant", "status"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.requests = Counter(
            "m2grl_requests", "Requests by route template, mode, variant and status.",
            ["route", "mode", "variant", "status"], registry=r,
        )  # fmt: skip
        self.errors = Counter("m2grl_errors", "Errors by reason.", ["reason"], registry=r)
        self.candidates_returned = Counter(
            "m2grl_candidates_returned", "Candidates returned.", ["mode", "variant"], registry=r
        )
        self.candidates_per_request = Histogram(
            "m2grl_candidates_per_request",
            "Candidates in one answer.",
            ["mode"],
            buckets=CANDIDATE_BUCKETS,
            registry=r,
        )
        self.candidates_filtered = Counter(
            "m2grl_candidates_filtered", "Candidates removed by exclusions.", ["mode", "variant"], registry=r
        )
        self.candidates_by_channel = Counter(
            "m2grl_candidates_by_channel",
            "General-mode candidates served, by the retrieval channel that listed them and variant "
            "(a candidate listed by two channels counts for both).",
            ["channel", "variant"],
            registry=r,
        )
        # gauges: with several workers "max" shows what any live worker serves, "min" the oldest build
        self.index_items = Gauge(
            "m2grl_index_items",
            "Items in the served index.",
            ["mode"],
            registry=r,
            multiprocess_mode="livemax",
        )
        self.index_info = Gauge(
            "m2grl_index_info",
            "1 for the served index version and its model version.",
            ["version", "model_version"],
            registry=r,
            multiprocess_mode="livemax",
        )
        self.index_build_timestamp = Gauge(
            "m2grl_index_build_timestamp_seconds",
            "Unix time the served index version was built.",
            registry=r,
            multiprocess_mode="livemin",
        )
        self.index_reloads = Counter(
            "m2grl_index_reloads", "Index reloads by result.", ["result"], registry=r
        )
        self.recent_store_errors = Counter(
            "m2grl_recent_store_errors", "Recent-store failures (request answered without it).", ["store"],
            registry=r,
        )  # fmt: skip
        self.degraded_answers = Counter(
            "m2grl_degraded_answers", "Answers served without a dependency (not errors), by what was missing.",
            ["reason"], registry=r,
        )  # fmt: skip
        self.index_damaged = Counter(
            "m2grl_index_damaged", "Served index versions dropped because their files changed on disk.",
            registry=r,
        )  # fmt: skip
        self.index_fallback = Gauge(
            "m2grl_index_fallback",
            "1 while a worker serves an older valid version because the one CURRENT names cannot be served.",
            registry=r,
            multiprocess_mode="livemax",
        )
        self.index_pins_missing = Gauge(
            "m2grl_index_pins_missing",
            "Index versions pinned by an A/B variant that this worker cannot load (not ready while > 0).",
            registry=r,
            multiprocess_mode="livemax",
        )
        self.feedback_impressions = Counter(
            "m2grl_feedback_impressions", "Impressions posted to /feedback, by the answer's variant and mode.",
            ["variant", "mode"], registry=r,
        )  # fmt: skip
        self.feedback_clicks = Counter(
            "m2grl_feedback_clicks", "Clicks posted to /feedback, by the answer's variant and mode.",
            ["variant", "mode"], registry=r,
        )  # fmt: skip
        self._info_labels: tuple[str, str] | None = None
        # label children cached: .labels() takes a lock and builds a tuple on every call
        self._req_children: dict[tuple[str, str, str, str], tuple[Any, Any]] = {}
        self._candidate_children: dict[tuple[str, str], tuple[Any, Any, Any]] = {}
        self._channel_children: dict[tuple[str, str], Any] = {}
        for reason in ("unknown_item", "bad_request", "not_ready", "store_unavailable", "internal"):
            self.errors.labels(reason)
        for result in ("success", "failure"):
            self.index_reloads.labels(result)
        self.degraded_answers.labels("recent_store")

    def observe_request(self, route: str, mode: str, variant: str, status: str, seconds: float) -> None:
        """Count one request and its latency."""
        key = (route, mode, variant, status)
        children = self._req_children.get(key)
        if children is None:
            children = (self.request_latency.labels(*key), self.requests.labels(*key))
            self._req_children[key] = children
        children[0].observe(seconds)
        children[1].inc()

    def observe_candidates(self, mode: str, variant: str, returned: int, filtered: int) -> None:
        key = (mode, variant)
        children = self._candidate_children.get(key)
        if children is None:
            children = (
                self.candidates_returned.labels(mode, variant),
                self.candidates_per_request.labels(mode),
                self.candidates_filtered.labels(mode, variant),
            )
            self._candidate_children[key] = children
        children[0].inc(returned)
        children[1].observe(returned)
        if filtered:
            children[2].inc(filtered)

    def observe_channels(self, variant: str, counts: Mapping[str, int]) -> None:
        """Add each channel's candidate count (``NeighbourResult.channel_counts``, ``channel_counts``)."""
        for name, count in counts.items():
            child = self._channel_children.get((name, variant))
            if child is None:
                child = self._channel_children[(name, variant)] = self.candidates_by_channel.labels(
                    name, variant
                )
            if count:
                child.inc(count)

    def init_feedback(self, variants: Iterable[str], modes: Iterable[str]) -> None:
        """Create the feedback series at 0: ``increase()`` misses the first value of a new series, so
        a counter born at its first event would lose the events before Prometheus's first scrape."""
        for variant in variants:
            for mode in modes:
                self.feedback_impressions.labels(variant, mode)
                self.feedback_clicks.labels(variant, mode)

    def count_feedback(self, variant: str, mode: str, impressions: int, clicks: int) -> None:
        if impressions:
            self.feedback_impressions.labels(variant, mode).inc(impressions)
        if clicks:
            self.feedback_clicks.labels(variant, mode).inc(clicks)

    def error(self, reason: str) -> None:
        self.errors.labels(reason).inc()

    def set_index(
        self, *, version: str, model_version: str, items_by_mode: dict[str, int], built_at: float | None
    ) -> None:
        """Publish the served version's gauges (the previous info series drops to 0)."""
        if self._info_labels is not None and self._info_labels != (version, model_version):
            self.index_info.labels(*self._info_labels).set(0)
        self.index_info.labels(version, model_version).set(1)
        self._info_labels = (version, model_version)
        for mode, n in items_by_mode.items():
            self.index_items.labels(mode).set(n)
        if built_at is not None:
            self.index_build_timestamp.set(built_at)

    def render(self) -> tuple[bytes, str]:
        """Exposition text and content type; aggregated over workers in multiprocess mode."""
        path = multiprocess_dir()
        if path is None:
            return generate_latest(self.registry), CONTENT_TYPE_LATEST
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=path)
        return generate_latest(registry), CONTENT_TYPE_LATEST

    @staticmethod
    def process_exit() -> None:
        """Drop this worker's live gauges from the multiprocess files (call at shutdown)."""
        if multiprocess_dir() is not None:
            multiprocess.mark_process_dead(os.getpid())


Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: scope key where a route leaves the (mode, variant) labels of its request
LABELS_KEY = "m2grl.labels"


class MetricsMiddleware:
    """Pure ASGI middleware timing every HTTP request (cheaper than ``BaseHTTPMiddleware``).

    The route label is the matched route template (``scope["route"].path``), never the raw path;
    routes put ``(mode, variant)`` in ``scope[LABELS_KEY]``. ``/metrics`` itself is not counted.
    """

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] == METRICS_PATH:
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except BaseException:
            status = 500
            self.metrics.error("internal")
            raise
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or UNMATCHED_ROUTE
            mode, variant = scope.get(LABELS_KEY, ("", ""))
            self.metrics.observe_request(template, mode, variant, str(status), time.perf_counter() - start)
