"""``POST /admin/reload``: load CURRENT now (bearer token; off without ``admin_token``)."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from app.deps import AdminGuard, Ctx
from app.errors import OrjsonResponse
from app.schemas import ErrorBody, ReloadResponse

router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[AdminGuard])


@router.post(
    "/reload",
    response_model=ReloadResponse,
    responses={
        403: {"model": ErrorBody, "description": "Missing or wrong bearer token."},
        404: {"model": ErrorBody, "description": "Admin routes disabled."},
        409: {"model": ReloadResponse, "description": "The new version was refused; the old one serves."},
    },
    summary="Reload the index version named by CURRENT",
    description="Loads and validates the version beside the served one, then swaps. With several "
    "workers only the worker answering reloads now; the others follow within reload_poll_s.",
)
async def post_reload(ctx: Ctx) -> Response:
    outcome = await ctx.manager.reload(force=True)
    body = {
        "result": outcome.result,
        "version": outcome.version,
        "previous": outcome.previous,
        "detail": outcome.detail,
    }
    return OrjsonResponse(body, status_code=409 if outcome.result == "failure" else 200)
