"""``POST /events``: record a user's interactions and remember their categories."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from starlette.responses import Response

from app.deps import Ctx, EventsGuard, user_of
from app.errors import ApiError, OrjsonResponse
from app.ids import body_items, sorted_categories, stored
from app.routes.i2i import BODY_ERRORS
from app.schemas import ErrorBody, EventsRequest, EventsResponse
from app.service import category_of
from app.settings import Settings
from app.stores import StoreUnavailable

router = APIRouter(tags=["events"])


def check_event_times(stamps: list[float | None], now: float, settings: Settings) -> None:
    """422 naming the first event stamped more than ``events_max_skew_s`` in the future (it would stay
    excluded past the TTL) or older than ``recent_ttl_s`` (it would not be remembered)."""
    latest = now + settings.events_max_skew_s
    earliest = now - settings.recent_ttl_s
    for i, stamp in enumerate(stamps):
        if stamp is None or earliest <= stamp <= latest:
            continue
        why = (
            f"{stamp - now:.0f} s in the future (more than events_max_skew_s)"
            if stamp > latest
            else f"{now - stamp:.0f} s old, older than recent_ttl_s (it would not be remembered)"
        )
        raise ApiError(
            422, "bad_request", f"body.events.{i}.timestamp: {why}",
            {"timestamp": {"ge": earliest, "le": latest}},
        )  # fmt: skip


@router.post(
    "/events",
    status_code=202,
    response_model=EventsResponse,
    dependencies=[EventsGuard],
    responses={
        **BODY_ERRORS,
        401: {"model": ErrorBody, "description": "Missing or wrong bearer token."},
        403: {"model": ErrorBody, "description": "Events are off (no ingest_token configured)."},
        503: {"model": ErrorBody, "description": "No index loaded, or the recent store is unavailable."},
    },
    summary="Record interactions (item, behaviour, timestamp)",
    description="The user is `user_id` in the body or the user header. Item ids are the served "
    "version's (the dataset's own string ids when it has them). Categories come from the served "
    "index; items it does not know are listed in `unknown_items` and not recorded. Needs the ingest "
    "token. Timestamps must lie between now - recent_ttl_s and now + events_max_skew_s (else 422).",
)
async def post_events(request: Request, ctx: Ctx, body: EventsRequest) -> Response:
    header_user = user_of(request, ctx)  # checked even when the body names the user
    user_id = body.user_id or header_user
    if not user_id:
        raise ApiError(
            422, "bad_request", f"body.user_id or the {ctx.settings.user_header} header is required",
            {"headers": [ctx.settings.user_header]},
        )  # fmt: skip
    now = time.time()
    check_event_times([e.timestamp for e in body.events], now, ctx.settings)
    index = ctx.manager.served.get(None)
    labels = index.labels
    view = ctx.settings.category_view
    given = [e.item_id for e in body.events]
    dense = body_items(labels, given, "body.events.{}.item_id")
    # events arrive a few at a time (<= 1000 by schema); the index answers per item
    known = [i for i, item in enumerate(dense) if index.has_item(item)]
    unknown_at = [i for i, item in enumerate(dense) if not index.has_item(item)]
    items = [dense[i] for i in known]
    cats = [category_of(index, item, view) for item in items]
    stamps = [now if (t := body.events[i].timestamp) is None else t for i in known]
    if items:
        try:
            if labels is None:
                await ctx.store.record(user_id, items, cats, stamps)
            else:
                # the user's ids, so that tomorrow's version (new dense ids) still reads them
                texts, cat_texts = stored(labels, view, items, cats)
                await ctx.store.record(user_id, texts, cat_texts, stamps, labelled=True)
        except StoreUnavailable as exc:
            ctx.metrics.recent_store_errors.labels(ctx.store.name).inc()
            raise ApiError(503, "store_unavailable", f"events not recorded: {exc}") from None
    known_cats = sorted({c for c in cats if c >= 0})
    out = {
        "user_id": user_id,
        "recorded": len(items),
        "unknown_items": sorted({given[i] if labels is None else str(given[i]) for i in unknown_at}),
        "categories": known_cats if labels is None else sorted_categories(labels, view, known_cats),
    }
    return OrjsonResponse(out, status_code=202)
