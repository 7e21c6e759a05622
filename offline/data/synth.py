"""Synthetic behaviour logs with a planted multi-view structure (``m2grl synth``).

The generator writes the canonical event table (``user_id, item_id, timestamp, behavior, category_id,
shop_id`` plus optional ``dwell_s`` and ``session_id``) as ``part-00000.parquet, ...`` together with the
structure it planted (under ``_truth/``), so tests and benchmarks can check that the pipeline (and M2GRL)
recovers it:

- a category tree: ``top_categories`` parents, each owning a contiguous range of ``categories``;
- every item belongs to exactly one category (category sizes are log-normal) and one shop; shops
  belong to one parent and specialise in a few of its categories (the item-category and item-shop
  relations of section 3.4 of the paper);
- item popularity inside a category follows a (bounded, continuous) Zipf law with exponent ``zipf_a``;
- users have ``interests_per_user`` interest categories; each session starts in one of them, stays in
  its category and, with probability ``p_drift`` per step, drifts to a *related* category (another
  category of the same parent), so consecutive events share a category far more often than chance;
- gaps inside a session are seconds to minutes (at most ``MAX_GAP_IN_SESSION_S``), gaps between two
  sessions of a user are at least ``MIN_SESSION_GAP_S`` (2 h), so the 1-hour idle split of section 3.1
  recovers the planted sessions exactly;
- a view -> fav / cart -> buy funnel: follow-up events are on the item just viewed and come right after
  the view; a buy always follows a cart;
- mis-clicks: a share ``p_misclick`` of views land on a random item of a random category with a dwell
  below 2 s, which the cleaning step of section 3.1 is meant to remove. Every other view lasts >= 2 s.

Determinism and chunking: events are generated in fixed blocks of ``BLOCK_EVENTS`` rows, each from its
own seeded stream, and only then cut into parquet parts of ``chunk_events`` rows. The concatenated
output therefore depends on ``seed`` and the structure fields only, never on ``chunk_events``; memory is
bounded by a few blocks plus the per-user state (one int64 per user), whatever the number of events.
Rows are grouped by session; each block covers its own slice of the time span, so parts come out roughly
in time order, but rows are not sorted by time.

Speed: every step is a numpy array operation over a block (no per-event Python loop). Worker threads
draw the next blocks and build their Arrow columns while the calling thread places sessions in time and
encodes parquet (integer columns delta-encoded, behaviour as a dictionary; readers see the schema of
:func:`event_schema`).
"""

from __future__ import annotations

import math
import sys
import time
import typing
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Self

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import Field, model_validator
from tqdm import tqdm

from core.atomic import atomic_dir, atomic_write_json
from core.config import ConfigError, FrozenConfig
from core.layout import MANIFEST
from core.types import Float64Array, IntArray

SYNTH_VERSION = 3
#: Rows generated from one random stream; fixed so that ``chunk_events`` never changes the content.
BLOCK_EVENTS = 1 << 20
#: Blocks drawn ahead by the worker threads (bounds memory to a few blocks).
PREFETCH_BLOCKS = 4
#: Threads drawing blocks (each block has its own random stream, so they are independent) while the
#: calling thread places sessions in time and writes parquet.
BLOCK_WORKERS = 2
#: Smallest idle gap between two sessions of one user: well above the 1-hour split of section 3.1
#: and the 30-minute merge window, so both rules give back the planted sessions.
MIN_SESSION_GAP_S = 2 * 3600
#: Largest gap between two events of one session (dwell cap + think-time cap): well below 1 hour.
MAX_DWELL_S = 600.0
MAX_THINK_S = 600
MAX_GAP_IN_SESSION_S = int(MAX_DWELL_S) + 1 + MAX_THINK_S
#: Behaviour labels, indexed by the int8 codes used inside the generator.
BEHAVIORS = ("view", "fav", "cart", "buy")
VIEW, FAV, CART, BUY = 0, 1, 2, 3
_BEHAVIOR_LABELS = pa.array(BEHAVIORS)
PART_NAME = "part-{:05d}.parquet"
Compression = Literal["snappy", "zstd", "lz4", "gzip", "none"]
COMPRESSIONS: tuple[str, ...] = typing.get_args(Compression)
#: The planted structure lives in a sub-folder whose name starts with "_": readers that take the
#: folder's ``*.parquet`` as the event table (DuckDB globs, Spark, which skips "_" paths) never see it.
TRUTH_DIR = "_truth"
TRUTH_ITEMS = f"{TRUTH_DIR}/items.parquet"
TRUTH_USERS = f"{TRUTH_DIR}/user_interests.parquet"


def _derived_sizes(events: int, given: dict[str, Any]) -> dict[str, int]:
    """The sizes left ``None``, derived from ``events`` in dependency order."""
    sizes = dict(given)
    rules = {
        "items": lambda: _clip(events // 20, 100, 2_000_000),
        "categories": lambda: _clip(sizes["items"] // 200, 10, 10_000),
        "top_categories": lambda: _clip(sizes["categories"] // 10, 2, 500),
        "shops": lambda: max(sizes["items"] // 50, sizes["categories"]),
        "users": lambda: max(events // 100, 10),
    }
    for name, rule in rules.items():
        if sizes.get(name) is None:
            sizes[name] = rule()
    return sizes


class SynthConfig(FrozenConfig):
    """What to generate. Sizes left ``None`` are derived from ``events``: ``items = events // 20`` within
    [100, 2_000_000], ``categories = items // 200`` within [10, 10_000], ``top_categories = categories //
    10`` within [2, 500], ``shops = max(items // 50, categories)``, ``users = max(events // 100, 10)``.

    Sessions start uniformly over ``days``, each generation block in its own slice (sized by its share of
    the events), so the parts come out roughly in time order; a session that would start less than 2 h
    after the end of the user's previous one is pushed later, so very active users may run past the end.
    """

    events: int = Field(100_000, ge=1, description="Rows written (10^4 to 10^8 is the intended range).")
    items: int | None = Field(None, ge=1, description="Items; none = derived from events.")
    categories: int | None = Field(None, ge=1, description="Leaf categories; none = derived from items.")
    top_categories: int | None = Field(None, ge=1, description="Parent categories; none = derived.")
    shops: int | None = Field(None, ge=1, description="Shops; none = derived.")
    users: int | None = Field(None, ge=1, description="Users; none = derived from events.")
    categories_per_shop: int = Field(3, ge=1, description="A shop sells items of 1 to this many categories.")
    interests_per_user: int = Field(
        3, ge=1, description="Interest categories per user; a session starts in one."
    )
    zipf_a: float = Field(
        1.1, gt=0, allow_inf_nan=False, description="Item popularity exponent in a category."
    )
    session_len_mean: float = Field(8.0, ge=1, allow_inf_nan=False, description="Mean views per session.")
    p_drift: float = Field(0.2, ge=0, le=1, description="Chance the next view moves to a sibling category.")
    p_fav: float = Field(0.03, ge=0, le=1, description="Chance a view is followed by a fav.")
    p_cart: float = Field(0.06, ge=0, le=1, description="Chance a view is followed by a cart.")
    p_buy: float = Field(0.02, ge=0, le=1, description="Chance a view is followed by a cart then a buy.")
    p_misclick: float = Field(
        0.05, ge=0, le=1, description="Share of views that are mis-clicks (dwell < 2 s)."
    )
    days: float = Field(9.0, gt=0, allow_inf_nan=False, description="Span of the log in days.")
    start_ts: int = Field(1_567_296_000, ge=0, description="Unix seconds of the earliest event (2019-09-01).")
    dwell: bool = Field(True, description="Write the dwell_s column (null for non-view events).")
    session_ids: bool = Field(False, description="Write the planted session_id column.")
    seed: int = Field(0, ge=0, description="Random seed.")
    chunk_events: int = Field(5_000_000, ge=1, description="Rows per parquet part.")
    compression: Compression = Field(
        "none",
        description="Parquet codec on top of the delta-encoded integer columns (none writes fastest; "
        "snappy or zstd make the files about a fifth smaller).",
    )

    @model_validator(mode="before")
    @classmethod
    def _derive_sizes(cls, data: Any) -> Any:
        events = data.get("events", 100_000) if isinstance(data, dict) else None
        if not isinstance(events, int) or isinstance(events, bool) or events < 1:
            return data  # the field's own check names the problem
        names = ("items", "categories", "top_categories", "shops", "users")
        given = {k: data.get(k) for k in names}
        if not all(v is None or (isinstance(v, int) and not isinstance(v, bool)) for v in given.values()):
            return data
        return {**data, **_derived_sizes(events, given)}

    @model_validator(mode="after")
    def _cross_fields(self) -> Self:
        items, cats, tops = self.n_items, self.n_categories, self.n_top_categories
        if cats < tops:
            raise ConfigError("categories", f"must be >= top_categories ({tops}), got {cats}")
        if items < cats:
            raise ConfigError("items", f"must be >= categories ({cats}), got {items}")
        if self.n_shops < tops:
            raise ConfigError("shops", f"must be >= top_categories ({tops}), got {self.shops}")
        if self.interests_per_user > cats:
            raise ConfigError(
                "interests_per_user", f"must be in [1, categories={cats}], got {self.interests_per_user}"
            )
        if self.p_buy > self.p_cart:
            raise ConfigError("p_buy", f"must be <= p_cart ({self.p_cart}): a buy follows a cart")
        return self

    # The derived sizes as plain ints (the fields are ``int | None`` only in the constructor's input).
    @property
    def n_items(self) -> int:
        return _n(self.items)

    @property
    def n_categories(self) -> int:
        return _n(self.categories)

    @property
    def n_top_categories(self) -> int:
        return _n(self.top_categories)

    @property
    def n_shops(self) -> int:
        return _n(self.shops)

    @property
    def n_users(self) -> int:
        return _n(self.users)


def _n(value: int | None) -> int:
    """A derived count after ``__post_init__`` filled it (never None by then)."""
    if value is None:  # pragma: no cover - guarded by __post_init__ ordering
        raise RuntimeError("derived field read before it was set")
    return value


def _clip(value: int, low: int, high: int) -> int:
    return max(low, min(high, value))


@dataclass(frozen=True)
class SynthSummary:
    """What :func:`generate` wrote: folder, row and session counts, timing."""

    output: Path
    events: int
    parts: int
    sessions: int
    behavior_counts: dict[str, int]
    seconds: float
    events_per_s: float
    config: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class World:
    """The planted structure, as index arrays (row ``i`` of an item array is item index ``i``).

    Categories are numbered so that each parent owns a contiguous range; items are sorted by
    category and, inside a category, by popularity rank (rank 0 is the most popular).
    """

    cat_parent: IntArray  # [C] parent index of each category
    parent_first_cat: IntArray  # [P] first category index of each parent
    parent_n_cats: IntArray  # [P] number of categories of each parent
    cat_first_item: IntArray  # [C] first item index of each category
    cat_n_items: IntArray  # [C] number of items of each category
    cat_cdf: Float64Array  # [C] cumulative category popularity (for interests and mis-clicks)
    item_shop: IntArray  # [N] shop index of each item
    user_cdf: Float64Array  # [U] cumulative user activity
    user_guide: IntArray  # [U] guide table of user_cdf (:func:`guide_table`)
    user_interests: IntArray  # [U, k] interest category indices
    item_ids: IntArray  # [N] original ids
    cat_ids: IntArray  # [C]
    shop_ids: IntArray  # [S]


def build_world(config: SynthConfig, rng: np.random.Generator) -> World:
    """Draw the category tree, items, shops and users (sizes from ``config``)."""
    n_items, n_cats, n_parents = config.n_items, config.n_categories, config.n_top_categories
    n_shops, n_users = config.n_shops, config.n_users

    cat_parent = (np.arange(n_cats, dtype=np.int64) * n_parents) // n_cats
    parent_first_cat = np.searchsorted(cat_parent, np.arange(n_parents)).astype(np.int64)
    parent_n_cats = np.bincount(cat_parent, minlength=n_parents).astype(np.int64)

    # Category sizes and popularity: log-normal weights, every category gets at least one item.
    cat_weight = rng.lognormal(0.0, 1.0, n_cats)
    cat_weight /= cat_weight.sum()
    cat_n_items = 1 + rng.multinomial(n_items - n_cats, cat_weight).astype(np.int64)
    cat_first_item = np.concatenate([[0], np.cumsum(cat_n_items)[:-1]]).astype(np.int64)
    item_cat = np.repeat(np.arange(n_cats, dtype=np.int64), cat_n_items)

    item_shop = _assign_shops(config, rng, item_cat, cat_parent, parent_first_cat, parent_n_cats, n_shops)

    user_weight = rng.lognormal(0.0, 0.75, n_users)
    cat_cdf = np.cumsum(cat_weight)
    user_interests = _sample_from_cdf(rng, cat_cdf, n_users * config.interests_per_user)
    user_cdf = np.cumsum(user_weight) / user_weight.sum()
    return World(
        cat_parent=cat_parent,
        parent_first_cat=parent_first_cat,
        parent_n_cats=parent_n_cats,
        cat_first_item=cat_first_item,
        cat_n_items=cat_n_items,
        cat_cdf=cat_cdf,
        item_shop=item_shop,
        user_cdf=user_cdf,
        user_guide=guide_table(user_cdf),
        user_interests=user_interests.reshape(n_users, config.interests_per_user),
        # Shuffled ids, so that nothing downstream can read the structure off the id order.
        item_ids=rng.permutation(n_items).astype(np.int64) + 1,
        cat_ids=rng.permutation(n_cats).astype(np.int64) + 1,
        shop_ids=rng.permutation(n_shops).astype(np.int64) + 1,
    )


def _assign_shops(
    config: SynthConfig,
    rng: np.random.Generator,
    item_cat: IntArray,
    cat_parent: IntArray,
    parent_first_cat: IntArray,
    parent_n_cats: IntArray,
    n_shops: int,
) -> IntArray:
    """Shop index of every item: shops belong to one parent and sell 1..k of its categories."""
    n_cats, n_parents = len(cat_parent), len(parent_first_cat)
    shop_parent = np.arange(n_shops, dtype=np.int64) % n_parents
    k = rng.integers(1, config.categories_per_shop + 1, n_shops)
    pair_shop = np.repeat(np.arange(n_shops, dtype=np.int64), k)
    p = shop_parent[pair_shop]
    pair_cat = parent_first_cat[p] + (rng.random(len(pair_shop)) * parent_n_cats[p]).astype(np.int64)
    # Categories no shop picked get one shop of their parent (shops of parent p are p, p + P, ...).
    uncovered = np.setdiff1d(np.arange(n_cats), pair_cat)
    up = cat_parent[uncovered]
    shops_of_parent = (n_shops - up + n_parents - 1) // n_parents
    extra_shop = up + n_parents * (rng.random(len(up)) * shops_of_parent).astype(np.int64)
    pairs = np.unique(
        np.stack([np.concatenate([pair_cat, uncovered]), np.concatenate([pair_shop, extra_shop])], axis=1),
        axis=0,
    )  # sorted by category, then shop
    cat_first_pair = np.searchsorted(pairs[:, 0], np.arange(n_cats))
    cat_n_pairs = np.bincount(pairs[:, 0], minlength=n_cats)
    pick = cat_first_pair[item_cat] + (rng.random(len(item_cat)) * cat_n_pairs[item_cat]).astype(np.int64)
    return pairs[pick, 1].astype(np.int64)


def _sample_from_cdf(
    rng: np.random.Generator, cdf: Float64Array, size: int, guide: IntArray | None = None
) -> IntArray:
    """Indices drawn with probabilities given by a normalised cumulative array (``guide``: its
    :func:`guide_table`, for large arrays, where a binary search misses the cache at every step)."""
    v = rng.random(size) * cdf[-1]
    idx = np.searchsorted(cdf, v, side="right") if guide is None else guided_search(cdf, guide, v)
    return np.minimum(idx, len(cdf) - 1).astype(np.int64)


def guide_table(cdf: Float64Array) -> IntArray:
    """``guide[j]``: the first index whose cumulative value exceeds the start of bucket ``j`` of
    ``len(cdf)`` equal buckets of ``[0, cdf[-1])`` (indexed search, Chen and Asau 1974)."""
    starts = np.arange(len(cdf), dtype=np.float64) * (cdf[-1] / len(cdf))
    return np.searchsorted(cdf, starts, side="right").astype(np.int64)


def guided_search(cdf: Float64Array, guide: IntArray, v: Float64Array) -> IntArray:
    """``np.searchsorted(cdf, v, side="right")`` through a :func:`guide_table`: start at the bucket's
    guide and step forward (about one step per draw), so a draw costs two or three memory reads
    instead of ``log2(len(cdf))`` dependent ones. Exact: a start that rounding put past the answer
    falls back to the binary search."""
    n = len(cdf)
    bucket = np.minimum((v * (n / cdf[-1])).astype(np.int64), n - 1)
    idx = guide[bucket]
    active = np.flatnonzero(cdf[np.minimum(idx, n - 1)] <= v)
    while active.size:
        idx[active] += 1
        active = active[idx[active] < n]
        active = active[cdf[idx[active]] <= v[active]]
    late = np.flatnonzero((idx > 0) & (cdf[np.maximum(idx - 1, 0)] > v))
    if late.size:
        idx[late] = np.searchsorted(cdf, v[late], side="right")
    return idx


def zipf_ranks(
    u: npt.NDArray[np.floating[Any]], n: IntArray, a: float, which: IntArray | None = None
) -> IntArray:
    """Ranks in ``[0, n)`` with P(rank r) ~ (r + 1)^-a, by inverting the continuous bounded power law.

    ``u`` are uniforms in [0, 1). ``n`` is the population size of each draw (broadcast); or, when
    ``which`` is given, a table of sizes and draw ``i`` uses ``n[which[i]]`` (the bound's power is then
    computed once per population rather than once per draw). Vectorised, O(1) per draw, computed in
    ``u``'s float type (float32 halves the cost of the power and is exact enough for ranks).
    """
    ftype = u.dtype.type
    top = n.astype(np.float64) + 1.0
    if abs(a - 1.0) < 1e-9:
        log_top = np.log(top).astype(ftype)
        x = np.exp(u * (log_top if which is None else log_top[which]))
    else:
        e = 1.0 - a
        scale = (np.power(top, e) - 1.0).astype(ftype)
        x = np.power(ftype(1.0) + u * (scale if which is None else scale[which]), ftype(1.0 / e))
    size = n if which is None else n[which]
    return np.minimum(x.astype(np.int64) - 1, size - 1).clip(min=0)


@dataclass(frozen=True)
class Block:
    """Events of one block, still without absolute time: ``offset_s`` is seconds since session start."""

    session: IntArray  # block-local session index per event (non-decreasing)
    session_user: IntArray  # [n_sessions] user index
    session_duration: IntArray  # [n_sessions] offset of the session's last event
    item: IntArray
    category: IntArray
    behavior: npt.NDArray[np.int8]
    offset_s: IntArray
    dwell_s: Float64Array  # NaN for non-view events


# Behaviour sequence after each view, indexed by the follow-up mask fav | cart << 1 | buy << 2 and the
# position in the group (view first, then fav, cart, buy when present).
_FUNNEL = np.full((8, 4), -1, dtype=np.int8)
for _mask in range(8):
    _seq = [VIEW] + [code for bit, code in ((1, FAV), (2, CART), (4, BUY)) if _mask & bit]
    _FUNNEL[_mask, : len(_seq)] = _seq


def generate_block(config: SynthConfig, world: World, rng: np.random.Generator, n_events: int) -> Block:
    """Exactly ``n_events`` events of whole sessions (the last one possibly cut), without timestamps."""
    follow = (1.0 - config.p_misclick) * (config.p_fav + config.p_cart + config.p_buy)
    n_views = int(n_events / (1.0 + follow) * 1.02) + 64
    n_sessions = int(n_views / config.session_len_mean * 1.05) + 16
    lengths = rng.geometric(1.0 / config.session_len_mean, n_sessions).astype(np.int64)
    while lengths.sum() < n_views:  # rare: draw more sessions
        lengths = np.concatenate([lengths, rng.geometric(1.0 / config.session_len_mean, n_sessions)])
    n_sessions, n_views = len(lengths), int(lengths.sum())
    view_session = np.repeat(np.arange(n_sessions, dtype=np.int64), lengths)
    session_first = np.cumsum(lengths) - lengths
    first_view = np.zeros(n_views, dtype=bool)
    first_view[session_first] = True

    # Session start: one interest category of the session's user.
    session_user = _sample_from_cdf(rng, world.user_cdf, n_sessions, world.user_guide)
    slot = rng.integers(0, config.interests_per_user, n_sessions)
    start_cat = world.user_interests[session_user, slot]
    parent = world.cat_parent[start_cat]
    p_first, p_n = world.parent_first_cat[parent], world.parent_n_cats[parent]

    # Drift: each step moves by 1..n-1 places inside the parent's category range, so it always lands
    # on another category of the same parent; the running sum per session is the current position.
    vp_n = p_n[view_session]
    drift = (rng.random(n_views, dtype=np.float32) < config.p_drift) & ~first_view & (vp_n > 1)
    at = np.flatnonzero(drift)
    step = np.zeros(n_views, dtype=np.int64)
    step[at] = 1 + (rng.random(len(at)) * (vp_n[at] - 1)).astype(np.int64)
    moved = np.cumsum(step)
    moved -= moved[session_first][view_session]
    cat = p_first[view_session] + ((start_cat - p_first)[view_session] + moved) % vp_n

    misclick = rng.random(n_views, dtype=np.float32) < config.p_misclick
    n_mis = int(misclick.sum())
    cat[misclick] = _sample_from_cdf(rng, world.cat_cdf, n_mis)
    u_rank = rng.random(n_views, dtype=np.float32)
    item = world.cat_first_item[cat] + zipf_ranks(u_rank, world.cat_n_items, config.zipf_a, cat)

    # Funnel: one uniform decides cart and buy (buy implies cart as p_buy <= p_cart).
    u = rng.random(n_views, dtype=np.float32)
    fav = (rng.random(n_views, dtype=np.float32) < config.p_fav) & ~misclick
    cart = (u < config.p_cart) & ~misclick
    buy = (u < config.p_buy) & ~misclick
    mask = fav.astype(np.int8) | (cart.astype(np.int8) << 1) | (buy.astype(np.int8) << 2)
    group = 1 + fav.astype(np.int64) + cart + buy

    # Log-normal dwell (median 25 s) in float32: plenty of precision, half the cost of float64.
    dwell = np.exp(
        np.float32(math.log(25.0)) + np.float32(0.8) * rng.standard_normal(n_views, dtype=np.float32)
    )
    dwell = np.clip(dwell, 2.0, MAX_DWELL_S).astype(np.float64)
    dwell[misclick] = rng.uniform(0.2, 1.99, n_mis)

    # Expand every view into its group of events (view, then follow-ups on the same item).
    ev_view = np.repeat(np.arange(n_views, dtype=np.int64), group)[:n_events]
    if len(ev_view) < n_events:  # astronomically unlikely with the 2 % margin; fail loudly
        raise RuntimeError(f"block drew {len(ev_view)} events, fewer than {n_events}")
    group_first = np.cumsum(group) - group
    pos = np.arange(n_events, dtype=np.int64) - group_first[ev_view]
    behavior = _FUNNEL.ravel()[mask[ev_view] * 4 + pos]
    is_view = pos == 0
    ev_dwell = np.where(is_view, dwell[ev_view], np.nan)

    # Time to the next event: the view's dwell plus think time, or a few seconds after a follow-up.
    think = np.minimum(rng.standard_exponential(n_events, dtype=np.float32) * 20.0, MAX_THINK_S).astype(
        np.int64
    )
    view_gap = np.ceil(dwell).astype(np.int64) + 1
    gap = np.where(is_view, view_gap[ev_view] + think, 1 + think // 4)
    session = view_session[ev_view]
    n_sessions = int(session[-1]) + 1
    start = np.cumsum(gap) - gap
    ev_first = group_first[session_first[:n_sessions]]
    offset = start - start[ev_first][session]
    ev_last = np.append(ev_first[1:], n_events) - 1
    return Block(
        session=session,
        session_user=session_user[:n_sessions],
        session_duration=offset[ev_last],
        item=item[ev_view],
        category=cat[ev_view],
        behavior=behavior,
        offset_s=offset,
        dwell_s=ev_dwell,
    )


def place_sessions(
    user: IntArray,
    duration: IntArray,
    wanted: IntArray,
    user_free: IntArray,
) -> IntArray:
    """Start time of each session on its user's timeline; updates ``user_free`` in place.

    ``wanted`` are the desired start times. A user's sessions keep the order of ``wanted``; each starts
    at ``wanted`` or, if that is sooner, ``MIN_SESSION_GAP_S`` after the end of the user's previous
    session (``user_free[u]`` holds the end of the user's last session so far), that is
    ``t_j = max(wanted_j, t_{j-1} + duration_{j-1} + MIN_SESSION_GAP_S)``. The recurrence is solved
    without a loop: with ``D_j`` the running sum of ``duration + gap`` before ``j``,
    ``t_j = D_j + max(lower bound, cummax_{i <= j}(wanted_i - D_i))`` per user.
    """
    span = int(wanted.max() - wanted.min()) if len(wanted) else 0
    if len(user) and span < (1 << 32) and int(user.max()) < (1 << 31):
        # One int64 key sorts like lexsort((wanted, user)) (both stable) at a third of the cost.
        order = np.argsort((user << 32) | (wanted - wanted.min()), kind="stable")
    else:  # pragma: no cover - a block spanning 136 years, or 2^31 users
        order = np.lexsort((wanted, user))
    u, w, dur = user[order], wanted[order], duration[order]
    n = len(u)
    first = np.ones(n, dtype=bool)
    first[1:] = u[1:] != u[:-1]
    group = np.cumsum(first) - 1
    step = np.where(first, 0, np.roll(dur, 1) + MIN_SESSION_GAP_S)
    d = np.cumsum(step)
    d -= d[np.flatnonzero(first)][group]
    lower = user_free[u] + MIN_SESSION_GAP_S  # only the group's first value matters
    c = np.where(first, np.maximum(w, lower), w) - d
    # Segmented running max: lift each user's group above all previous ones, then take it back off.
    lift = group.astype(np.int64) << 42
    t = np.maximum.accumulate(c + lift) - lift + d
    last = np.append(first[1:], True)
    user_free[u[last]] = t[last] + dur[last]
    start = np.empty_like(t)
    start[order] = t
    return start


@dataclass(frozen=True)
class DrawnBlock:
    """A block with its event columns built, except ``timestamp`` (placing sessions in time carries
    user state from block to block, so it runs in order on the writing thread)."""

    block: Block
    columns: dict[str, pa.Array]


def draw_block(config: SynthConfig, world: World, rng: np.random.Generator, n_events: int) -> DrawnBlock:
    """:func:`generate_block` plus its Arrow columns: the part of the work that can run in parallel."""
    block = generate_block(config, world, rng, n_events)
    columns: dict[str, pa.Array] = {
        "user_id": pa.array(block.session_user[block.session] + 1),
        "item_id": pa.array(world.item_ids[block.item]),
        # Dictionary-encoded as written to parquet (readers see strings, :func:`_parquet_options`).
        "behavior": pa.DictionaryArray.from_arrays(pa.array(block.behavior), _BEHAVIOR_LABELS),
        "category_id": pa.array(world.cat_ids[block.category]),
        "shop_id": pa.array(world.shop_ids[world.item_shop[block.item]]),
    }
    if config.dwell:
        columns["dwell_s"] = pa.array(block.dwell_s, mask=np.isnan(block.dwell_s))  # null = unknown
    return DrawnBlock(block, columns)


def _block_table(
    config: SynthConfig, drawn: DrawnBlock, session_start: IntArray, session_base: int
) -> pa.Table:
    """The event columns of one block in :func:`event_schema` order (behaviour still dictionary-typed)."""
    block = drawn.block
    columns = dict(drawn.columns)
    columns["timestamp"] = pa.array(session_start[block.session] + block.offset_s)
    if config.session_ids:
        columns["session_id"] = pa.array(block.session + session_base)
    return pa.table({name: columns[name] for name in event_schema(config).names})


def _write_schema(config: SynthConfig) -> pa.Schema:
    """:func:`event_schema` with the behaviour column as the dictionary the blocks carry."""
    schema = event_schema(config)
    i = schema.get_field_index("behavior")
    return schema.set(i, pa.field("behavior", pa.dictionary(pa.int8(), pa.string())))


def _parquet_options(config: SynthConfig) -> dict[str, Any]:
    """Writer options: integer columns delta-encoded (smaller than plain + snappy, and cheaper to
    write), behaviour dictionary-encoded, and no stored Arrow schema, so every reader sees
    :func:`event_schema` (behaviour as a string) rather than the dictionary type written."""
    ints = [f.name for f in event_schema(config) if pa.types.is_integer(f.type)]
    return {
        "compression": config.compression,
        "use_dictionary": ["behavior"],
        "column_encoding": dict.fromkeys(ints, "DELTA_BINARY_PACKED"),
        "store_schema": False,
    }


def event_schema(config: SynthConfig) -> pa.Schema:
    """Arrow schema of the parts written for ``config``."""
    cols = [
        ("user_id", pa.int64()),
        ("item_id", pa.int64()),
        ("timestamp", pa.int64()),
        ("behavior", pa.string()),
        ("category_id", pa.int64()),
        ("shop_id", pa.int64()),
    ]
    if config.dwell:
        cols.append(("dwell_s", pa.float64()))
    if config.session_ids:
        cols.append(("session_id", pa.int64()))
    return pa.schema(cols)


def truth_table(world: World) -> pa.Table:
    """The planted item structure: ``item_id, category_id, parent_category, shop_id, popularity_rank``."""
    item_cat = np.repeat(np.arange(len(world.cat_n_items)), world.cat_n_items)
    rank = np.arange(len(item_cat)) - world.cat_first_item[item_cat]
    return pa.table(
        {
            "item_id": pa.array(world.item_ids),
            "category_id": pa.array(world.cat_ids[item_cat]),
            "parent_category": pa.array(world.cat_parent[item_cat] + 1),
            "shop_id": pa.array(world.shop_ids[world.item_shop]),
            "popularity_rank": pa.array(rank.astype(np.int64)),
        }
    )


def _users_table(world: World) -> pa.Table:
    n_users, k = world.user_interests.shape
    return pa.table(
        {
            "user_id": pa.array(np.repeat(np.arange(n_users, dtype=np.int64) + 1, k)),
            "category_id": pa.array(world.cat_ids[world.user_interests.ravel()]),
        }
    )


class _PartWriter:
    """Cuts a stream of tables into parquet parts of exactly ``rows_per_part`` rows (last one shorter)."""

    def __init__(self, folder: Path, schema: pa.Schema, rows_per_part: int, options: dict[str, Any]) -> None:
        self.folder, self.schema, self.rows_per_part = folder, schema, rows_per_part
        self.options = options
        self.parts: list[dict[str, Any]] = []
        self._writer: pq.ParquetWriter | None = None
        self._rows = 0

    def write(self, table: pa.Table) -> None:
        while table.num_rows:
            if self._writer is None:
                name = PART_NAME.format(len(self.parts))
                self._writer = pq.ParquetWriter(self.folder / name, self.schema, **self.options)
                self.parts.append({"file": name, "rows": 0})
            take = min(self.rows_per_part - self._rows, table.num_rows)
            self._writer.write_table(table.slice(0, take))
            table = table.slice(take)
            self._rows += take
            self.parts[-1]["rows"] = self._rows
            if self._rows == self.rows_per_part:
                self.close()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer, self._rows = None, 0


def generate(
    config: SynthConfig, output: Path, *, progress: bool = True, overwrite: bool = False
) -> SynthSummary:
    """Write ``config.events`` synthetic events to ``output`` (atomically) and return a summary.

    ``output`` receives ``part-00000.parquet, ...`` (``config.chunk_events`` rows each, schema
    :func:`event_schema`), ``_truth/items.parquet`` (:func:`truth_table`),
    ``_truth/user_interests.parquet`` (``user_id, category_id``: each user's interest categories) and
    ``manifest.json`` (config, counts, parts, timing), so the folder itself is a valid event input. Raises ``FileExistsError`` when ``output``
    exists and ``overwrite`` is false.
    """
    t0, cpu0 = time.perf_counter(), time.process_time()
    root = np.random.SeedSequence(config.seed)
    world_seq, time_seq, block_root = root.spawn(3)
    world = build_world(config, np.random.default_rng(world_seq))
    time_rng = np.random.default_rng(time_seq)
    user_free = np.full(config.n_users, config.start_ts - MIN_SESSION_GAP_S, dtype=np.int64)
    span_s = config.days * 86_400
    n_blocks = -(-config.events // BLOCK_EVENTS)
    block_seqs = block_root.spawn(n_blocks)
    counts = np.zeros(len(BEHAVIORS), dtype=np.int64)
    sessions = 0
    t_min, t_max = np.iinfo(np.int64).max, np.iinfo(np.int64).min
    with atomic_dir(Path(output), overwrite=overwrite) as tmp:
        writer = _PartWriter(tmp, _write_schema(config), config.chunk_events, _parquet_options(config))
        bar = tqdm(
            total=config.events,
            unit="ev",
            unit_scale=True,
            desc="synth",
            disable=not (progress and sys.stderr.isatty()),
        )
        try:
            # Worker threads draw the next blocks (numpy releases the GIL) while this thread places
            # sessions in time and encodes parquet; placement stays sequential as it carries user state.
            with ThreadPoolExecutor(max_workers=BLOCK_WORKERS) as pool:
                pending: deque[Future[DrawnBlock]] = deque()
                for b in range(n_blocks):
                    while len(pending) < PREFETCH_BLOCKS and b + len(pending) < n_blocks:
                        nb = b + len(pending)
                        n = min(BLOCK_EVENTS, config.events - nb * BLOCK_EVENTS)
                        rng = np.random.default_rng(block_seqs[nb])
                        pending.append(pool.submit(draw_block, config, world, rng, n))
                    drawn = pending.popleft().result()
                    block = drawn.block
                    # The block's share of the time span is its share of the events.
                    lo = config.start_ts + span_s * (b * BLOCK_EVENTS) / config.events
                    width = span_s * len(block.item) / config.events
                    wanted = lo + time_rng.random(len(block.session_user)) * width
                    start = place_sessions(
                        block.session_user, block.session_duration, wanted.astype(np.int64), user_free
                    )
                    writer.write(_block_table(config, drawn, start, sessions))
                    sessions += len(block.session_user)
                    counts += np.bincount(block.behavior, minlength=len(BEHAVIORS))
                    t_min = min(t_min, int(start.min()))
                    t_max = max(t_max, int((start + block.session_duration).max()))
                    bar.update(len(block.item))
        finally:
            writer.close()
            bar.close()
        (tmp / TRUTH_DIR).mkdir()
        pq.write_table(truth_table(world), tmp / TRUTH_ITEMS)
        pq.write_table(_users_table(world), tmp / TRUTH_USERS)
        seconds = time.perf_counter() - t0
        behavior_counts = {name: int(c) for name, c in zip(BEHAVIORS, counts, strict=True)}
        atomic_write_json(
            tmp / MANIFEST,
            {
                "kind": "synthetic-events",
                "synth_version": SYNTH_VERSION,
                "config": config.to_dict(),
                "schema": {f.name: str(f.type) for f in event_schema(config)},
                "parts": writer.parts,
                "counts": {
                    "events": config.events,
                    "sessions": sessions,
                    "items": config.n_items,
                    "categories": config.n_categories,
                    "top_categories": config.n_top_categories,
                    "shops": config.n_shops,
                    "users": config.n_users,
                    "behaviors": behavior_counts,
                },
                "time_range": [t_min, t_max],
                "truth": {"items": TRUTH_ITEMS, "user_interests": TRUTH_USERS},
                # CPU seconds of all threads: on a shared machine a fairer figure than wall time.
                "timings": {"generate_s": seconds, "generate_cpu_s": time.process_time() - cpu0},
            },
        )
    return SynthSummary(
        output=Path(output),
        events=config.events,
        parts=len(writer.parts),
        sessions=sessions,
        behavior_counts=behavior_counts,
        seconds=seconds,
        events_per_s=config.events / max(seconds, 1e-9),
        config=config.to_dict(),
    )
