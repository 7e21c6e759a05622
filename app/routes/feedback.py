"""``POST /feedback``: impressions and clicks of an answer, counted per variant for the A/B readout."""

from __future__ import annotations

import time

from fastapi import APIRouter
from starlette.responses import Response

from app.deps import Ctx, IngestGuard, feedback_secret_of
from app.errors import ApiError, OrjsonResponse
from app.feedback import InvalidRequestId, read_request_id
from app.ids import check_items
from app.schemas import MAX_FEEDBACK_EVENTS, ErrorBody, FeedbackRequest, FeedbackResponse
from app.settings import Settings

router = APIRouter(tags=["feedback"])


def check_timestamps(stamps: list[float | None], issued: int, now: float, settings: Settings) -> None:
    """422 naming the first event stamped in the future, before its answer was issued, or too long ago
    (each bound widened by ``feedback_max_skew_s`` for clock drift between client and replicas)."""
    skew = settings.feedback_max_skew_s
    earliest = max(issued - skew, now - settings.feedback_max_age_s)
    for i, stamp in enumerate(stamps):
        if stamp is None:
            continue
        if stamp > now + skew:
            raise ApiError(
                422, "bad_request", f"body.events.{i}.timestamp: {stamp - now:.0f} s in the future",
                {"timestamp": {"ge": earliest, "le": now + skew}},
            )  # fmt: skip
        if stamp < earliest:
            raise ApiError(
                422, "bad_request",
                f"body.events.{i}.timestamp: before the answer was issued or older than feedback_max_age_s",
                {"timestamp": {"ge": earliest, "le": now + skew}},
            )  # fmt: skip


@router.post(
    "/feedback",
    status_code=202,
    response_model=FeedbackResponse,
    dependencies=[IngestGuard],
    responses={
        400: {"model": ErrorBody, "description": "Unreadable body (not UTF-8 JSON)."},
        401: {"model": ErrorBody, "description": "Missing or wrong bearer token."},
        403: {"model": ErrorBody, "description": "Feedback is off (no ingest_token configured)."},
        413: {"model": ErrorBody, "description": "More events than allowed, or a body over max_body_bytes."},
        422: {"model": ErrorBody, "description": "Bad body, forged or expired request_id, bad timestamp."},
    },
    summary="Count the impressions and clicks of one answer",
    description="`request_id` is the one the answer carried; its variant and mode label the counters "
    "`m2grl_feedback_impressions_total` and `m2grl_feedback_clicks_total`. Stateless: any replica "
    "accepts any replica's ids, and nothing is deduplicated (post each event once).",
)
async def post_feedback(ctx: Ctx, body: FeedbackRequest) -> Response:
    settings = ctx.settings
    if len(body.events) > MAX_FEEDBACK_EVENTS:
        raise ApiError(
            413, "payload_too_large", f"body.events: {len(body.events)} events exceed {MAX_FEEDBACK_EVENTS}",
            {"events": {"max_length": MAX_FEEDBACK_EVENTS}},
        )  # fmt: skip
    now = time.time()
    try:
        claims = read_request_id(
            feedback_secret_of(ctx),
            body.request_id,
            now,
            settings.feedback_max_age_s,
            settings.feedback_max_skew_s,
        )
    except InvalidRequestId as exc:
        raise ApiError(422, "bad_request", f"body.request_id: {exc}") from None
    check_timestamps([e.timestamp for e in body.events], claims.issued, now, settings)
    # item ids are counted, not looked up: only their form is checked, against the version that served
    # the answer's variant (accepted as they are while none is loaded)
    variant = settings.variant(claims.variant)
    pinned = variant.index_version if variant is not None else None
    served = ctx.manager.served
    index = served.current if pinned is None else served.pinned.get(pinned)
    if index is not None:
        check_items(index.labels, [e.item_id for e in body.events], "body.events.{}.item_id")
    clicks = sum(1 for e in body.events if e.kind == "click")
    impressions = len(body.events) - clicks
    ctx.metrics.count_feedback(claims.variant, claims.mode, impressions, clicks)
    out = {"variant": claims.variant, "mode": claims.mode, "impressions": impressions, "clicks": clicks}
    return OrjsonResponse(out, status_code=202)
