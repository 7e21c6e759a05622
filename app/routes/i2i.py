"""``GET /i2i/{item_id}`` and ``POST /i2i:batch``: neighbours of trigger items, asked and answered in the
served version's ids (the user's own string ids when it has labels: ``app.ids``)."""

from __future__ import annotations

import collections
import functools
from typing import Any

import anyio.to_thread
import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from app.catalogue import add_fields, catalogues_of, with_fields_parameter
from app.deps import Ctx, context_of, query_of, request_id_for, user_of, variant_of
from app.errors import AnswerResponse, ApiError
from app.ids import body_categories, body_items, items_out, label_answer, label_records, trigger_of
from app.query import openapi_parameters, parse_item_id, parse_mode, query_params
from app.schemas import BatchRequest, BatchResponse, ErrorBody, I2IResponse
from app.service import (
    AppContext,
    category_of,
    exclusions,
    lookup,
    needs_recent,
    observe,
    recent_or_empty,
)
from app.settings import VariantConfig
from app.stores import EMPTY
from index.errors import UnknownItem
from index.serving import ServingIndex

router = APIRouter(tags=["retrieval"])

ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "Unknown item."},
    422: {"model": ErrorBody, "description": "Bad parameter (names it and what is allowed)."},
    503: {"model": ErrorBody, "description": "No index version loaded yet."},
}
#: routes with a JSON body also answer these
BODY_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    400: {"model": ErrorBody, "description": "Unreadable body (not UTF-8 JSON)."},
    413: {"model": ErrorBody, "description": "Body larger than max_body_bytes."},
}


def check_k(k: int | None, default_k: int, max_k: int) -> int:
    """``k`` or the default, bounded by the configured maximum (422 names the bound)."""
    if k is None:
        return default_k
    if k > max_k:
        raise ApiError(
            422, "bad_request", f"query.k: {k} exceeds max_k {max_k}", {"k": {"ge": 1, "le": max_k}}
        )
    return k


@router.get(
    "/i2i/{item_id}",
    response_model=I2IResponse,
    responses=ERRORS,
    summary="Candidates for one trigger item",
    description="General (similar) or diversity (related, other categories) neighbours of a trigger. "
    "Diversity mode excludes the trigger's category and the user's recent categories; general mode "
    "excludes recent categories only with exclude_recent=true. Fewer than k only when exhausted.",
    openapi_extra=with_fields_parameter(openapi_parameters(item_id=True)),
)
async def get_i2i(request: Request) -> Response:
    # no declared parameters: the hot path parses its own (see app.query)
    ctx = context_of(request)
    settings = ctx.settings
    params = query_params(request.scope["query_string"])
    mode = parse_mode(params)
    user_id = user_of(request, ctx)
    variant = variant_of(request, ctx, mode, user_id)
    # one snapshot for the whole request: a concurrent reload cannot change the version under it
    index = ctx.manager.served.get(variant.index_version)
    # ids are read as this version speaks them; None (integer ids) skips every translation
    labels = index.labels
    raw_item = request.path_params["item_id"]
    item_id = parse_item_id(raw_item) if labels is None else trigger_of(labels, raw_item)
    q = query_of(params, ctx, labels)
    k, explicit, exclude_recent = q.k, q.exclude_categories, q.exclude_recent
    own = (category_of(index, item_id, settings.category_view),) if mode == "diversity" else ()
    recent = await recent_or_empty(ctx, user_id, labels) if needs_recent(mode, exclude_recent) else EMPTY
    excluded = exclusions(
        mode=mode, explicit=explicit, recent=recent, exclude_recent=exclude_recent, own_categories=own
    )
    result = lookup(index, item_id, mode, variant, k, excluded=excluded, category_view=settings.category_view)
    observe(ctx, mode, variant.name, len(result), result.filtered_out, result.channel_counts)
    body = {
        "trigger": item_id,
        "mode": mode,
        "variant": variant.name,
        "strategy": variant.strategy,
        "index_version": index.version,
        "k": k,
        "returned": len(result),
        "exhausted": result.exhausted,
        "excluded_categories": sorted(excluded),
        "candidates": result.records(),
    }
    # optional candidate fields (?fields=title): one substring test when absent, so the hot path is unchanged
    if b"fields" in request.scope["query_string"]:
        await add_fields(catalogues_of(request.app.state), index, request.scope["query_string"], body)
    if labels is not None:
        label_answer(labels, body, settings.category_view)
    rid = body["request_id"] = request_id_for(ctx, variant.name, mode)
    return AnswerResponse(
        body, headers={"X-Variant": variant.name, "X-Index-Version": index.version, "X-Request-Id": rid}
    )


@router.post(
    "/i2i:batch",
    response_model=BatchResponse,
    responses=BODY_ERRORS,
    summary="Candidates for many triggers in one call",
    description="Same rules as GET /i2i/{item_id}; an unknown trigger gets error='unknown_item' "
    "in its own entry instead of failing the batch.",
)
async def post_i2i_batch(request: Request, ctx: Ctx, body: BatchRequest) -> Response:
    settings = ctx.settings
    if len(body.item_ids) > settings.max_batch:
        raise ApiError(
            422,
            "bad_request",
            f"body.item_ids: {len(body.item_ids)} triggers exceed max_batch {settings.max_batch}",
            {"item_ids": {"max_length": settings.max_batch}},
        )
    k = check_k(body.k, settings.default_k, settings.max_k)
    check_batch_work(len(body.item_ids), k, settings.max_batch_candidates)
    user_id = user_of(request, ctx)
    variant = variant_of(request, ctx, body.mode, user_id)
    index = ctx.manager.served.get(variant.index_version)
    labels = index.labels
    triggers = body_items(labels, body.item_ids, "body.item_ids.{}")
    explicit = body_categories(
        labels, settings.category_view, body.exclude_categories, "body.exclude_categories.{}"
    )
    recent = (
        await recent_or_empty(ctx, user_id, labels) if needs_recent(body.mode, body.exclude_recent) else EMPTY
    )
    shared = exclusions(
        mode=body.mode, explicit=explicit, recent=recent, exclude_recent=body.exclude_recent, own_categories=(),
    )  # fmt: skip
    rid = request_id_for(ctx, variant.name, body.mode)
    # up to max_batch_candidates candidates and their JSON: in a worker thread (at most batch_threads
    # per worker), so that /healthz and the hot GET /i2i keep their event loop
    answer = await anyio.to_thread.run_sync(
        functools.partial(batch_answer, ctx, index, body, triggers, variant, k, shared, rid),
        limiter=ctx.heavy,
    )
    return Response(
        answer,
        media_type="application/json",
        headers={"X-Variant": variant.name, "X-Index-Version": index.version, "X-Request-Id": rid},
    )


def check_batch_work(triggers: int, k: int, max_candidates: int) -> None:
    """422 when ``triggers`` x ``k`` exceeds ``max_batch_candidates`` (names the largest k allowed)."""
    if triggers * k > max_candidates:
        raise ApiError(
            422, "bad_request",
            f"body: {triggers} triggers x k {k} = {triggers * k} candidates exceed max_batch_candidates "
            f"{max_candidates} (at most k={max(1, max_candidates // triggers)} for {triggers} triggers)",
            {"max_batch_candidates": max_candidates},
        )  # fmt: skip


def batch_answer(
    ctx: AppContext,
    index: ServingIndex,
    body: BatchRequest,
    triggers: list[int],
    variant: VariantConfig,
    k: int,
    shared: frozenset[int],
    rid: str,
) -> bytes:
    """The JSON answer of a batch (blocking: run in a worker thread). One lookup per trigger (``triggers``:
    the dense ids of ``body.item_ids``, -1 for an unknown label): exclusions differ per trigger in
    diversity mode; an unknown trigger gets its own error entry, naming it as the body did."""
    settings = ctx.settings
    labels = index.labels
    results: list[dict[str, Any]] = []
    served_channels: collections.Counter[str] = collections.Counter()
    returned = filtered = 0
    for given, trigger in zip(body.item_ids, triggers, strict=True):
        try:
            own = {category_of(index, trigger, settings.category_view)} if body.mode == "diversity" else set()
            res = lookup(
                index, trigger, body.mode, variant, k, excluded=(shared | own) - {-1},
                category_view=settings.category_view,
            )  # fmt: skip
        except UnknownItem:
            ctx.metrics.error("unknown_item")
            results.append({"trigger": given, "error": "unknown_item", "exhausted": False, "candidates": []})
            continue
        returned += len(res)
        filtered += res.filtered_out
        served_channels.update(res.channel_counts or {})
        records = res.records() if labels is None else label_records(labels, res.records())
        results.append(
            {"trigger": given if labels is None else items_out(labels, (trigger,))[0], "error": None,
             "exhausted": res.exhausted, "candidates": records}
        )  # fmt: skip
    observe(ctx, body.mode, variant.name, returned, filtered, served_channels)
    out = {
        "mode": body.mode,
        "variant": variant.name,
        "strategy": variant.strategy,
        "index_version": index.version,
        "k": k,
        "results": results,
        "request_id": rid,
    }
    return orjson.dumps(out, option=orjson.OPT_SERIALIZE_NUMPY)
