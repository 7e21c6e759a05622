"""Recent stores: the in-process TTL store, and the Redis store against a real redis-server
(started by scripts/start_redis.sh), including its degraded behaviour and recovery."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
import tracemalloc
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from app.settings import Settings
from app.stores import STORES, MemoryStore, RedisStore, StoreUnavailable, make_store
from tests.app.conftest import ITEM_IDS, REPO, RedisServer, make_settings
from tests.app.test_routes import sample

DAY = 24 * 3600.0


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def run(coro):  # noqa: ANN001, ANN201 - test helper
    return asyncio.run(coro)


def test_memory_store_ttl_and_order() -> None:
    clock = Clock(1_000_000.0)
    store = MemoryStore(15 * DAY, max_users=10, items_kept=3, clock=clock)
    now = clock.now
    run(store.record("u", [1, 2, 3, 4], [10, 20, -1, 10], [now - 16 * DAY, now - 5, now - 1, now - 3]))
    recent = run(store.recent("u"))
    # item 1 is older than the TTL: ignored; -1 is an unknown category, never stored
    assert recent.categories == {10, 20}
    assert recent.items == (3, 4, 2)
    clock.now += 15 * DAY - 4  # item 2 (t-5) and category 20 expire, item 4 (t-3) survives
    recent = run(store.recent("u"))
    assert recent.items == (3, 4) and recent.categories == {10}
    assert run(store.recent("nobody")).categories == frozenset()


def test_memory_store_keeps_newest_items_and_bounds_users() -> None:
    clock = Clock(1000.0)
    store = MemoryStore(DAY, max_users=2, items_kept=2, clock=clock)
    run(store.record("u", [1, 2, 3], [1, 1, 1], [990.0, 999.0, 995.0]))
    assert run(store.recent("u")).items == (2, 3)
    run(store.record("v", [1], [1], [999.0]))
    run(store.record("w", [1], [1], [999.0]))
    assert run(store.recent("u")).items == ()  # least recently written user evicted
    assert run(store.recent("w")).items == (1,)


def test_memory_store_forgets_idle_users_by_ttl_before_the_cap() -> None:
    clock = Clock(1000.0)
    store = MemoryStore(10.0, max_users=1000, items_kept=2, clock=clock)
    for user in ("a", "b", "c"):
        run(store.record(user, [1], [1], [clock.now]))
    clock.now += 5.0
    run(store.record("d", [2], [2], [clock.now]))
    assert len(store) == 4  # nobody expired yet
    clock.now += 6.0  # a, b, c are 11 s old, d 6 s
    run(store.record("e", [3], [3], [clock.now]))
    assert len(store) == 2 and run(store.recent("d")).items == (2,)
    clock.now += 20.0  # d and e expired: a read forgets d at once
    assert run(store.recent("d")) == run(store.recent("nobody")) and len(store) == 1


def bytes_per_user(users: int = 4000, items_kept: int = 20) -> float:
    """Heap growth per user of a memory store holding ``items_kept`` items and 10 categories per user
    (tracemalloc, the user id strings included)."""
    store = MemoryStore(DAY, max_users=users, items_kept=items_kept, clock=Clock(1e9))
    items, cats = list(range(items_kept)), [i % 10 for i in range(items_kept)]
    stamps = [1e9 - i for i in range(items_kept)]
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for u in range(users):
        run_sync_record(store, f"user-{u:08d}", items, cats, stamps)
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert len(store) == users
    return (after - before) / users


def run_sync_record(
    store: MemoryStore, user: str, items: list[int], cats: list[int], stamps: list[float]
) -> None:
    coro = store.record(user, items, cats, stamps)
    try:  # record never awaits: drive it without an event loop per call
        coro.send(None)
    except StopIteration:
        return
    raise AssertionError("MemoryStore.record awaited")


def test_memory_store_default_cap_fits_the_kubernetes_memory_limit() -> None:
    """The documented ~1.2 KiB per user, and the default cap x workers inside a quarter of the pod's
    memory limit (the rest is the index, the interpreter and headroom)."""
    per_user = bytes_per_user()
    assert 900 < per_user < 1.4 * 1024, per_user
    deployment = yaml.safe_load((REPO / "deploy/k8s/deployment.yaml").read_text())
    configmap = yaml.safe_load((REPO / "deploy/k8s/configmap.yaml").read_text())
    server = next(c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "server")
    limit = server["resources"]["limits"]["memory"]
    assert limit.endswith("Gi")
    workers = int(configmap["data"]["M2GRL_WORKERS"])
    cap = Settings.model_fields["memory_store_max_users"].default
    assert configmap["data"]["M2GRL_RECENT_STORE"] == "memory"
    assert cap * per_user * workers < 0.25 * float(limit[:-2]) * 2**30


def test_registry_lists_valid_names(tmp_path) -> None:  # noqa: ANN001
    assert sorted(STORES) == ["memory", "redis"]
    assert isinstance(make_store(Settings(index_root=tmp_path)), MemoryStore)
    assert isinstance(make_store(Settings(index_root=tmp_path, recent_store="redis")), RedisStore)


def _redis_store(url: str, clock: Clock | None = None, **kw: float) -> RedisStore:
    return RedisStore(
        url, 15 * DAY, timeout_s=kw.get("timeout_s", 0.2), retry_s=kw.get("retry_s", 0.0), items_kept=3,
        prefix=f"test:{uuid.uuid4().hex[:8]}", clock=clock or time.time,
    )  # fmt: skip


@pytest.mark.redis
def test_redis_store_round_trip_and_ttl(redis_server: RedisServer) -> None:
    clock = Clock(time.time())
    now = clock.now

    async def scenario() -> None:
        store = _redis_store(redis_server.url, clock)
        try:
            await store.record(
                "u", [1, 2, 3, 4], [10, 20, -1, 10], [now - 16 * DAY, now - 5, now - 1, now - 3]
            )
            await store.record("u", [5], [30], [now - 2])
            recent = await store.recent("u")
            assert recent.categories == {10, 20, 30}
            assert recent.items == (3, 5, 4)  # newest first, only items_kept=3
            clock.now += 15 * DAY - 2.5  # t-5 and t-3 fall out of the window
            recent = await store.recent("u")
            assert recent.categories == {30}
            assert recent.items == (3, 5)
            ttl = await store._client.ttl(f"{store.prefix}:u:c")
            assert 0 < ttl <= 15 * DAY
        finally:
            await store.close()

    run(scenario())


def test_memory_store_keeps_labelled_ids_apart() -> None:
    """Versions with labels record the user's own ids in their own space: an integer-id version never
    reads them (nor the other way round), so a pinned variant of the other kind cannot be fed strings."""
    clock = Clock(1000.0)
    store = MemoryStore(DAY, max_users=10, items_kept=5, clock=clock)
    run(store.record("u", [1, 2], [10, -1], [990.0, 995.0]))
    run(store.record("u", ["B07-abc", "7"], ["books", None], [996.0, 997.0], labelled=True))
    assert run(store.recent("u")) == run(store.recent("u", labelled=False))
    assert run(store.recent("u")).items == (2, 1) and run(store.recent("u")).categories == {10}
    labelled = run(store.recent("u", labelled=True))
    assert labelled.items == ("7", "B07-abc") and labelled.categories == {"books"}
    assert len(store) == 2 and run(store.recent("v", labelled=True)).items == ()


@pytest.mark.redis
def test_redis_store_keeps_labelled_ids_apart(redis_server: RedisServer) -> None:
    clock = Clock(time.time())
    now = clock.now

    async def scenario() -> None:
        store = _redis_store(redis_server.url, clock)
        try:
            await store.record("u", [1], [10], [now - 2])
            await store.record("u", ["B07-abc", "12"], ["toys", None], [now - 3, now - 1], labelled=True)
            recent = await store.recent("u")
            assert recent.items == (1,) and recent.categories == {10}
            labelled = await store.recent("u", labelled=True)
            assert labelled.items == ("12", "B07-abc") and labelled.categories == {"toys"}
        finally:
            await store.close()

    run(scenario())


@pytest.mark.redis
def test_redis_down_raises_store_unavailable_quickly() -> None:
    async def scenario() -> None:
        store = _redis_store("redis://127.0.0.1:1/0", timeout_s=0.05)
        t0 = time.perf_counter()
        with pytest.raises(StoreUnavailable):
            await store.recent("u")
        assert time.perf_counter() - t0 < 1.0
        await store.close()

    run(scenario())


@pytest.mark.redis
def test_redis_slow_times_out_then_recovers(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario() -> None:
        store = _redis_store(redis_server.url, timeout_s=0.05, retry_s=0.3)
        sent = 0  # pipelines built, i.e. calls that went to Redis
        pipeline = store._client.pipeline

        def counting_pipeline(*args: Any, **kwargs: Any) -> Any:
            nonlocal sent
            sent += 1
            return pipeline(*args, **kwargs)

        monkeypatch.setattr(store._client, "pipeline", counting_pipeline)
        try:
            await store.record("u", [1], [7], [time.time()])
            os.kill(redis_server.pid, signal.SIGSTOP)  # a hung Redis: connections open, no answers
            try:
                t0 = time.perf_counter()
                with pytest.raises(StoreUnavailable):
                    await store.recent("u")
                assert time.perf_counter() - t0 < 0.5
                assert sent == 2
                with pytest.raises(StoreUnavailable, match="skipped"):  # breaker open: Redis not asked
                    await store.recent("u")
                assert sent == 2
            finally:
                os.kill(redis_server.pid, signal.SIGCONT)
            await asyncio.sleep(0.35)
            assert (await store.recent("u")).categories == {7}
            assert sent == 3  # breaker closed again: Redis asked
        finally:
            await store.close()

    run(scenario())


def test_a_redis_outage_is_logged_once_per_interval_and_counted_as_degraded(
    index_root: Path, client_for: Callable[..., TestClient], caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(
        index_root, recent_store="redis", redis_url="redis://127.0.0.1:1/0", redis_retry_s=0.0
    )
    client = client_for(settings)
    trigger = int(ITEM_IDS[0])
    with caplog.at_level(logging.WARNING, logger="m2grl.app"):
        for i in range(40):
            r = client.get(f"/i2i/{trigger}?mode=diversity&k=3", headers={"X-User-Id": f"u{i}"})
            assert r.status_code == 200
    outage = [r for r in caplog.records if "recent store unavailable" in r.getMessage()]
    assert len(outage) == 1 and outage[0].levelname == "WARNING"
    text = client.get("/metrics").text
    assert sample(text, "m2grl_degraded_answers_total", reason="recent_store") == 40
    assert sample(text, "m2grl_recent_store_errors_total", store="redis") == 40
    assert sample(text, "m2grl_errors_total", reason="store_unavailable") == 0
