"""``GET /u2i``: candidates of a user's last few items, merged."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from app.deps import context_of, query_of, request_id_for, user_of, variant_of
from app.errors import AnswerResponse, ApiError
from app.ids import items_out, label_records
from app.metrics import channel_counts
from app.query import openapi_parameters, parse_mode, query_params
from app.routes.i2i import ERRORS
from app.schemas import U2IResponse
from app.service import category_of, exclusions, lookup, merge_candidates, observe, recent_or_empty

router = APIRouter(tags=["retrieval"])


@router.get(
    "/u2i",
    response_model=U2IResponse,
    responses=ERRORS,
    summary="Candidates for a user from their last items",
    description="Triggers are `recent_items` when given, else the user's last items recorded by "
    "POST /events (newest first, at most u2i_triggers). Each item keeps its best score over the "
    "triggers; the triggers themselves are never returned. Unknown triggers are skipped.",
    openapi_extra=openapi_parameters(recent_items=True),
)
async def get_u2i(request: Request) -> Response:
    ctx = context_of(request)
    settings = ctx.settings
    params = query_params(request.scope["query_string"])
    mode = parse_mode(params)
    user_id = user_of(request, ctx)
    if not user_id and not params.get("recent_items", "").strip(", "):
        raise ApiError(
            422, "bad_request", f"give recent_items or a {settings.user_header} header",
            {"recent_items": "comma-separated item ids", "headers": [settings.user_header]},
        )  # fmt: skip
    variant = variant_of(request, ctx, mode, user_id)
    index = ctx.manager.served.get(variant.index_version)
    labels = index.labels
    q = query_of(params, ctx, labels)
    k, explicit, exclude_recent, given = q.k, q.exclude_categories, q.exclude_recent, q.recent_items
    recent = await recent_or_empty(ctx, user_id, labels)
    candidates = list(given) or list(recent.items)
    triggers = [t for t in dict.fromkeys(candidates) if index.has_item(t)][: settings.u2i_triggers]
    own = [category_of(index, t, settings.category_view) for t in triggers] if mode == "diversity" else []
    excluded = exclusions(
        mode=mode, explicit=explicit, recent=recent, exclude_recent=exclude_recent, own_categories=own
    )
    # at most u2i_triggers lookups; the triggers are excluded from each other's lists
    results = [
        lookup(
            index,
            t,
            mode,
            variant,
            k,
            excluded=excluded,
            exclude_items=triggers,
            category_view=settings.category_view,
        )  # fmt: skip
        for t in triggers
    ]
    merged = merge_candidates(results, k)
    if labels is not None:
        label_records(labels, merged)
    channels = channel_counts(c["channels"] for c in merged if "channels" in c)
    observe(ctx, mode, variant.name, len(merged), sum(r.filtered_out for r in results), channels)
    body = {
        "user_id": user_id,
        "triggers": triggers if labels is None else items_out(labels, triggers),
        "mode": mode,
        "variant": variant.name,
        "strategy": variant.strategy,
        "index_version": index.version,
        "k": k,
        "returned": len(merged),
        "exhausted": len(merged) < k,
        "candidates": merged,
    }
    rid = body["request_id"] = request_id_for(ctx, variant.name, mode)
    return AnswerResponse(
        body, headers={"X-Variant": variant.name, "X-Index-Version": index.version, "X-Request-Id": rid}
    )
