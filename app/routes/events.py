"""``POST /events``: record a user's interactions and remember their categories."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from starlette.responses import Response

from app.deps import Ctx, user_of
from app.errors import ApiError, OrjsonResponse
from app.routes.i2i import BODY_ERRORS
from app.schemas import ErrorBody, EventsRequest, EventsResponse
from app.service import category_of
from app.stores import StoreUnavailable

router = APIRouter(tags=["events"])


@router.post(
    "/events",
    status_code=202,
    response_model=EventsResponse,
    responses={
        **BODY_ERRORS,
        503: {"model": ErrorBody, "description": "No index loaded, or the recent store is unavailable."},
    },
    summary="Record interactions (item, behaviour, timestamp)",
    description="The user is `user_id` in the body or the user header. Categories come from the served "
    "index; items it does not know are listed in `unknown_items` and not recorded.",
)
async def post_events(request: Request, ctx: Ctx, body: EventsRequest) -> Response:
    user_id = body.user_id or user_of(request, ctx)
    if not user_id:
        raise ApiError(
            422, "bad_request", f"body.user_id or the {ctx.settings.user_header} header is required",
            {"headers": [ctx.settings.user_header]},
        )  # fmt: skip
    index = ctx.manager.served.get(None)
    now = time.time()
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
