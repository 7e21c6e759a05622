"""``/healthz`` (alive), ``/readyz`` (index loaded and valid) and ``/metrics`` (Prometheus)."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import PlainTextResponse, Response

from app.deps import Ctx
from app.errors import OrjsonResponse
from app.schemas import ErrorBody

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness: the process answers")
async def healthz() -> Response:
    return OrjsonResponse({"status": "ok"})


@router.get(
    "/readyz",
    summary="Readiness: CURRENT and every pinned version are loaded",
    description="`missing_pinned` names the pinned versions that cannot be loaded (not ready); `fallback` "
    "says when an older valid version serves because the one CURRENT names cannot be (ready, logged); "
    "`damaged` lists versions whose files changed on disk after they were loaded.",
    responses={503: {"model": ErrorBody, "description": "Not ready (the body says what is missing)."}},
)
async def readyz(ctx: Ctx) -> Response:
    manager = ctx.manager
    served = manager.served
    body = {
        "status": "ready" if manager.ready else "not_ready",
        "version": manager.version,
        "pinned": sorted(served.pinned),
        "last_error": manager.last_error,
        "missing_pinned": dict(sorted(manager.pin_errors.items())),
        "fallback": manager.fallback,
        "damaged": dict(sorted(manager.damaged.items())),
    }
    if not manager.ready:
        body.update(
            error="not_ready", detail=manager.last_error or "no index version loaded yet", allowed=None
        )
        return OrjsonResponse(body, status_code=503)
    return OrjsonResponse(body)


@router.get(
    "/metrics", summary="Prometheus metrics", response_class=PlainTextResponse, include_in_schema=True
)
async def metrics(ctx: Ctx) -> Response:
    payload, content_type = ctx.metrics.render()
    return Response(payload, media_type=content_type)
