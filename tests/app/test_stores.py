"""Recent stores: the in-process TTL store, and the Redis store against a real redis-server
(started by scripts/start_redis.sh), including its degraded behaviour and recovery."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid

import pytest

from app.settings import Settings
from app.stores import STORES, MemoryStore, RedisStore, StoreUnavailable, make_store
from tests.app.conftest import RedisServer

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
def test_redis_slow_times_out_then_recovers(redis_server: RedisServer) -> None:
    async def scenario() -> None:
        store = _redis_store(redis_server.url, timeout_s=0.05, retry_s=0.3)
        try:
            await store.record("u", [1], [7], [time.time()])
            os.kill(redis_server.pid, signal.SIGSTOP)  # a hung Redis: connections open, no answers
            try:
                t0 = time.perf_counter()
                with pytest.raises(StoreUnavailable):
                    await store.recent("u")
                assert time.perf_counter() - t0 < 0.5
                t0 = time.perf_counter()
                with pytest.raises(StoreUnavailable, match="skipped"):  # breaker open: no wait at all
                    await store.recent("u")
                assert time.perf_counter() - t0 < 0.01
            finally:
                os.kill(redis_server.pid, signal.SIGCONT)
            await asyncio.sleep(0.35)
            assert (await store.recent("u")).categories == {7}
        finally:
            await store.close()

    run(scenario())
