"""``POST /events``: record a user's interactions and remember their categories."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from starlette.responses import Response

from app.deps import Ctx, EventsGuard, user_of
from app.errors import ApiError, OrjsonResponse
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
    description="The user is `user_id` in the body or the user header. Categories come from the served "
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
    view = ctx.settings.category_view
    # events arrive a few at a time (<= 1000 by schema); the index answers per item
    known = [e for e in body.events if index.has_item(e.item_id)]
    unknown = sorted({e.item_id for e in body.events if not index.has_item(e.item_id)})
    items = [e.item_id for e in known]
    cats = [category_of(index, e.item_id, view) for e in known]
    stamps = [e.timestamp if e.timestamp is not None else now for e in known]
    if items:
        try:
            await ctx.store.record(user_id, items, cats, stamps)
        except StoreUnavailable as exc:
            ctx.metrics.recent_store_errors.labels(ctx.store.name).inc()
            raise ApiError(503, "store_unavailable", f"events not recorded: {exc}") from None
    out = {
        "user_id": user_id,
        "recorded": len(items),
        "unknown_items": unknown,
        "categories": sorted({c for c in cats if c >= 0}),
    }
    return OrjsonResponse(out, status_code=202)
