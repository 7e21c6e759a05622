"""Recent-interaction stores: per user, the categories seen recently (excluded from answers) and the
last items (triggers of /u2i), each forgotten after a TTL (15 days by default, section 6.1).

Two implementations behind one async interface, picked by name from ``STORES``:
- ``memory``: in-process dict with a TTL and an LRU bound (one per worker: fine for tests and one
  replica; use Redis for several workers or replicas);
- ``redis``: two sorted sets per user (member = id, score = last-seen unix time), trimmed by time on
  write and read by score range, with a key expiry so idle users vanish.

Ids are kept as the API speaks them, in one of two spaces: integer ids (a version without labels), or,
with ``labelled=True``, the text of the user's own ids (a version with labels, ``index.labels``). Two
versions served side by side (a pinned A/B variant) may speak different ids; separate spaces keep one's
ids from ever reaching the other's lookups, and the integer space works exactly as before labels existed.

Any backend failure (down, slow past its budget) raises ``StoreUnavailable``; callers degrade.
"""

from __future__ import annotations

import asyncio
import time
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from app.settings import Settings

T = TypeVar("T")
#: an id as stored: ``int`` in the integer space, ``str`` in the labelled one
K = TypeVar("K", int, str)


class StoreUnavailable(RuntimeError):
    """The recent store could not answer in time; the request goes on without it."""


@dataclass(frozen=True, slots=True)
class Recent(Generic[K]):
    """What the store knows of a user: categories seen within the TTL, and items newest first."""

    categories: frozenset[K]
    items: tuple[K, ...]


EMPTY: Recent[Any] = Recent(frozenset(), ())


def _known(category: int | str | None) -> bool:
    """Whether a recorded category is stored: not unknown (``-1`` integer, None label)."""
    return category is not None and not (isinstance(category, int) and category < 0)


class RecentStore(ABC):
    """Async interface of a recent-interaction store."""

    name: str

    @abstractmethod
    async def record(
        self,
        user_id: str,
        items: Sequence[int] | Sequence[str],
        categories: Sequence[int] | Sequence[str | None],
        timestamps: Sequence[float],
        *,
        labelled: bool = False,
    ) -> None:
        """Record interactions: ``items[i]`` of category ``categories[i]`` (``-1`` or None = unknown, not
        stored) seen at unix time ``timestamps[i]``, in the labelled space (strings) or the integer one.
        Events older than the TTL are ignored."""

    @abstractmethod
    async def recent(self, user_id: str, *, labelled: bool = False) -> Recent[Any]:
        """Categories and items (newest first) seen by the user within the TTL, in one id space."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""


#: expired users a memory-store write may drop (oldest written first)
EXPIRE_PER_WRITE = 4


class MemoryStore(RecentStore):
    """In-process TTL store, bounded to ``max_users`` users (least recently written evicted) and
    forgetting users whose events are all older than the TTL (on read, and a few per write).

    Memory: about 1.2 KiB per user with ``items_kept=20`` (measured by ``tests/app/test_stores.py``), so
    the default 200,000 users take about 240 MiB per worker."""

    name = "memory"

    def __init__(
        self, ttl_s: float, *, max_users: int, items_kept: int, clock: Callable[[], float] = time.time
    ) -> None:
        self.ttl_s = ttl_s
        self.max_users = max_users
        self.items_kept = items_kept
        self.clock = clock
        # per id space (labelled or not): user -> ({category: last seen}, {item: last seen}); each space
        # holds at most max_users users
        self._spaces: dict[bool, OrderedDict[str, tuple[dict[Any, float], dict[Any, float]]]] = {
            False: OrderedDict(),
            True: OrderedDict(),
        }

    async def record(
        self,
        user_id: str,
        items: Sequence[int] | Sequence[str],
        categories: Sequence[int] | Sequence[str | None],
        timestamps: Sequence[float],
        *,
        labelled: bool = False,
    ) -> None:
        horizon = self.clock() - self.ttl_s
        users = self._spaces[labelled]
        cats, its = users.pop(user_id, ({}, {}))
        # a handful of events per call: a plain loop is cheaper than building arrays
        for item, cat, ts in zip(items, categories, timestamps, strict=True):
            if ts < horizon:
                continue
            its[item] = max(ts, its.get(item, ts))
            if _known(cat):
                cats[cat] = max(ts, cats.get(cat, ts))
        if len(its) > self.items_kept:
            its = dict(sorted(its.items(), key=lambda kv: kv[1], reverse=True)[: self.items_kept])
        users[user_id] = (cats, its)
        while len(users) > self.max_users:
            users.popitem(last=False)
        self._expire(users, horizon)

    @staticmethod
    def _expire(users: OrderedDict[str, tuple[dict[Any, float], dict[Any, float]]], horizon: float) -> None:
        """Drop users whose every event is older than ``horizon``, oldest write first, at most
        ``EXPIRE_PER_WRITE`` per write (amortised O(1)): idle users leave by TTL, not only at the cap."""
        for _ in range(EXPIRE_PER_WRITE):
            oldest = next(iter(users), None)
            if oldest is None:
                return
            _, its = users[oldest]
            if its and max(its.values()) >= horizon:
                return
            del users[oldest]

    def __len__(self) -> int:
        return sum(len(users) for users in self._spaces.values())

    async def recent(self, user_id: str, *, labelled: bool = False) -> Recent[Any]:
        users = self._spaces[labelled]
        entry = users.get(user_id)
        if entry is None:
            return EMPTY
        horizon = self.clock() - self.ttl_s
        cats, its = entry
        if not its or max(its.values()) < horizon:
            del users[user_id]  # wholly expired: forget the user now
            return EMPTY
        return Recent(
            frozenset(c for c, ts in cats.items() if ts >= horizon),
            tuple(i for i, ts in sorted(its.items(), key=lambda kv: kv[1], reverse=True) if ts >= horizon),
        )


class RedisStore(RecentStore):
    """Redis store: ``<prefix>:<user>:c`` and ``<prefix>:<user>:i`` sorted sets scored by last-seen time
    (``:lc`` and ``:li`` in the labelled id space).

        Every call is bounded by ``timeout_s``; after a failure Redis is skipped for ``retry_s`` seconds
        (a simple circuit breaker) so a dead Redis costs no latency, then tried again (recovery).
    """

    name = "redis"

    def __init__(
        self,
        url: str,
        ttl_s: float,
        *,
        timeout_s: float,
        retry_s: float,
        items_kept: int,
        prefix: str = "m2grl:recent",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.ttl_s = ttl_s
        self.timeout_s = timeout_s
        self.retry_s = retry_s
        self.items_kept = items_kept
        self.prefix = prefix
        self.clock = clock
        self._open_until = 0.0
        self._client = aioredis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, retry_on_timeout=False
        )

    def _keys(self, user_id: str, labelled: bool = False) -> tuple[str, str]:
        if labelled:
            return f"{self.prefix}:{user_id}:lc", f"{self.prefix}:{user_id}:li"
        return f"{self.prefix}:{user_id}:c", f"{self.prefix}:{user_id}:i"

    async def _guard(self, call: Callable[[], Awaitable[T]]) -> T:
        now = time.monotonic()
        if now < self._open_until:
            raise StoreUnavailable(f"redis skipped for {self._open_until - now:.2f}s after a failure")
        try:
            return await asyncio.wait_for(call(), self.timeout_s)
        except (RedisError, OSError, TimeoutError) as exc:
            self._open_until = time.monotonic() + self.retry_s
            raise StoreUnavailable(f"redis: {type(exc).__name__}: {exc}") from exc

    async def record(
        self,
        user_id: str,
        items: Sequence[int] | Sequence[str],
        categories: Sequence[int] | Sequence[str | None],
        timestamps: Sequence[float],
        *,
        labelled: bool = False,
    ) -> None:
        now = self.clock()
        horizon = now - self.ttl_s
        cat_scores: dict[Any, float] = {}
        item_scores: dict[Any, float] = {}
        for item, cat, ts in zip(items, categories, timestamps, strict=True):
            if ts < horizon:
                continue
            item_scores[item] = max(ts, item_scores.get(item, ts))
            if _known(cat):
                cat_scores[cat] = max(ts, cat_scores.get(cat, ts))
        if not item_scores:
            return
        ckey, ikey = self._keys(user_id, labelled)
        ttl = max(1, int(self.ttl_s))

        async def write() -> None:
            pipe = self._client.pipeline(transaction=False)
            if cat_scores:
                # GT keeps the newest timestamp when an older event arrives late
                pipe.zadd(ckey, {str(c): s for c, s in cat_scores.items()}, gt=True)
                pipe.zremrangebyscore(ckey, "-inf", f"({horizon}")
                pipe.expire(ckey, ttl)
            pipe.zadd(ikey, {str(i): s for i, s in item_scores.items()}, gt=True)
            pipe.zremrangebyrank(ikey, 0, -self.items_kept - 1)
            pipe.expire(ikey, ttl)
            await pipe.execute()

        await self._guard(write)

    async def recent(self, user_id: str, *, labelled: bool = False) -> Recent[Any]:
        horizon = self.clock() - self.ttl_s
        ckey, ikey = self._keys(user_id, labelled)

        async def read() -> list[Any]:
            pipe = self._client.pipeline(transaction=False)
            pipe.zrangebyscore(ckey, horizon, "+inf")
            pipe.zrevrangebyscore(ikey, "+inf", horizon)
            return list(await pipe.execute())

        cats, its = await self._guard(read)
        if labelled:
            return Recent(frozenset(c.decode() for c in cats), tuple(i.decode() for i in its))
        return Recent(frozenset(int(c) for c in cats), tuple(int(i) for i in its))

    async def ping(self) -> bool:
        """True when Redis answers within budget (used by tests and readiness details)."""
        try:
            await self._guard(self._ping)
        except StoreUnavailable:
            return False
        return True

    async def _ping(self) -> None:
        await self._client.ping()

    async def close(self) -> None:
        await self._client.aclose()  # type: ignore[attr-defined]  # types-redis predates aclose


def _memory(settings: Settings) -> RecentStore:
    return MemoryStore(
        settings.recent_ttl_s,
        max_users=settings.memory_store_max_users,
        items_kept=settings.recent_items_kept,
    )


def _redis(settings: Settings) -> RecentStore:
    return RedisStore(
        settings.redis_url,
        settings.recent_ttl_s,
        timeout_s=settings.redis_timeout_s,
        retry_s=settings.redis_retry_s,
        items_kept=settings.recent_items_kept,
    )


#: Registry of recent-store factories by ``Settings.recent_store`` name.
STORES: dict[str, Callable[[Settings], RecentStore]] = {"memory": _memory, "redis": _redis}


def make_store(settings: Settings) -> RecentStore:
    """Build the store named by ``settings.recent_store``; an unknown name lists the valid ones."""
    try:
        factory = STORES[settings.recent_store]
    except KeyError:
        raise ValueError(
            f"recent_store: unknown store {settings.recent_store!r}; valid: {sorted(STORES)}"
        ) from None
    return factory(settings)
