"""Request dependencies: the app context, the variant of a request, request ids and the bearer guards.

The hot retrieval routes call ``context_of(request)`` directly instead of declaring ``Ctx``: FastAPI's
dependency solving costs tens of microseconds per request even for one trivial dependency."""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.errors import ApiError
from app.feedback import issue_request_id
from app.metrics import LABELS_KEY
from app.query import RetrievalQuery, parse_retrieval_query
from app.schemas import MAX_USER_ID_CHARS
from app.service import AppContext
from app.settings import VariantConfig
from index.labels import VersionLabels


def context_of(request: Request) -> AppContext:
    """The ``AppContext`` built by the lifespan; 503 while the service is starting."""
    ctx: AppContext | None = getattr(request.app.state, "ctx", None)
    if ctx is None:
        raise ApiError(503, "not_ready", "the service is starting")
    return ctx


async def get_ctx(request: Request) -> AppContext:
    """``context_of`` as a dependency (``async``: a sync dependency would cost a threadpool hop on every
    request)."""
    return context_of(request)


Ctx = Annotated[AppContext, Depends(get_ctx)]


def query_of(params: Mapping[str, str], ctx: AppContext, labels: VersionLabels | None) -> RetrievalQuery:
    """The retrieval query ``params`` (``app.query.query_params``) under the configured ``default_k`` /
    ``max_k``, category and item ids read as the served version speaks them (``labels``)."""
    settings = ctx.settings
    if labels is None:
        return parse_retrieval_query(params, default_k=settings.default_k, max_k=settings.max_k)
    return parse_retrieval_query(
        params, default_k=settings.default_k, max_k=settings.max_k,
        categories=labels.of(settings.category_view), items=labels.item,
    )  # fmt: skip


def user_of(request: Request, ctx: AppContext) -> str | None:
    """The user id from the configured header (None when absent or blank); 422 when longer than
    ``MAX_USER_ID_CHARS`` (the server accepts headers of any size; the recent store must not)."""
    user = request.headers.get(ctx.settings.user_header) or None
    if user is not None and len(user) > MAX_USER_ID_CHARS:
        header = ctx.settings.user_header
        raise ApiError(
            422, "bad_request", f"header {header}: {len(user)} characters exceed {MAX_USER_ID_CHARS}",
            {header: {"max_length": MAX_USER_ID_CHARS}},
        )  # fmt: skip
    return user


def variant_of(request: Request, ctx: AppContext, mode: str, user_id: str | None) -> VariantConfig:
    """Assign the request's variant (forcing header first; ``UnknownVariant`` -> 422) and label it
    for the metrics middleware."""
    variant = ctx.assigner.assign(user_id, request.headers.get(ctx.settings.variant_header))
    request.scope[LABELS_KEY] = (mode, variant.name)
    return variant


async def require_admin(request: Request, ctx: Ctx) -> None:
    """Admin routes: 404 when no token is configured, 403 on a missing or wrong bearer token."""
    token = ctx.settings.admin_token
    if token is None:
        raise ApiError(404, "not_found", "admin routes are disabled (no admin_token configured)")
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not secrets.compare_digest(given.strip().encode(), token.encode()):
        raise ApiError(403, "forbidden", "admin routes need 'Authorization: Bearer <admin_token>'")


AdminGuard = Depends(require_admin)

#: documents the bearer scheme of POST /feedback and POST /events in OpenAPI; the check is ``check_ingest``
ingest_bearer = HTTPBearer(
    auto_error=False, scheme_name="ingest_token", description="The service's ingest_token setting."
)


def check_ingest(
    ctx: AppContext, credentials: HTTPAuthorizationCredentials | None, route: str, what: str
) -> None:
    """403 ``{what} is off`` when no ``ingest_token`` is configured, 401 on a missing or wrong bearer token
    (naming ``route``)."""
    token = ctx.settings.ingest_token
    if token is None:
        raise ApiError(403, "forbidden", f"{what} is off (no ingest_token configured)")
    given = credentials.credentials if credentials is not None else ""
    if not secrets.compare_digest(given.strip().encode(), token.encode()):
        raise ApiError(
            401, "unauthorized", f"{route} needs 'Authorization: Bearer <ingest_token>'",
            headers={"WWW-Authenticate": "Bearer"},
        )  # fmt: skip


async def require_ingest(
    ctx: Ctx, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(ingest_bearer)]
) -> None:
    """Feedback: 403 when no ``ingest_token`` is configured, 401 on a missing or wrong bearer token."""
    check_ingest(ctx, credentials, "POST /feedback", "feedback")


async def require_events_ingest(
    ctx: Ctx, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(ingest_bearer)]
) -> None:
    """Events (they change what a user is served): the same token and answers as feedback."""
    check_ingest(ctx, credentials, "POST /events", "events ingestion")


IngestGuard = Depends(require_ingest)
EventsGuard = Depends(require_events_ingest)


def feedback_secret_of(ctx: AppContext) -> str:
    """The key of request ids (``create_app`` always sets one, see ``app.feedback.with_feedback_secret``)."""
    secret = ctx.settings.feedback_secret
    if secret is None:
        raise RuntimeError("feedback_secret is unset: build the app with app.main.create_app")
    return secret


def request_id_for(ctx: AppContext, variant: str, mode: str) -> str:
    """A signed id for an answer served by ``variant`` in ``mode`` (``app.feedback``), now."""
    return issue_request_id(feedback_secret_of(ctx), variant, mode, time.time())
