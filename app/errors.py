"""Domain errors to HTTP: every error answer is ``{"error": code, "detail": "...", "allowed": ...}``.

``index/`` raises ``UnknownItem``, ``UnknownMode``, ``IndexNotReady``; the app raises ``ApiError``.
Only this module picks status codes. Bad input never becomes a 500.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, cast

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from app.ab import UnknownVariant
from app.metrics import Metrics
from index.errors import DamagedIndex, IndexNotReady, UnknownChannel, UnknownItem, UnknownMode

log = logging.getLogger("m2grl.app")


class ApiError(Exception):
    """An error answer: HTTP ``status``, machine-readable ``code``, human ``detail``, ``allowed`` values."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        allowed: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.allowed = allowed
        self.headers = headers


class OrjsonResponse(Response):
    """JSON response serialised by orjson (numpy ints/floats included), no pydantic pass."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)


class AnswerResponse(OrjsonResponse):
    """A 200 JSON answer of a hot route, its headers given as ASCII text (variant names, version names and
    request ids are): the header list is built directly instead of by Starlette's normalisation, which took
    3% of the running server's time per ``/i2i`` request (py-spy)."""

    def __init__(self, content: Any, headers: Mapping[str, str]) -> None:
        self.status_code = 200
        self.background = None
        self.body = self.render(content)
        self.raw_headers = [
            (b"content-length", str(len(self.body)).encode()),
            (b"content-type", b"application/json"),
            *((name.lower().encode(), value.encode()) for name, value in headers.items()),
        ]


def error_response(
    status: int, code: str, detail: str, allowed: Any = None, headers: Mapping[str, str] | None = None
) -> OrjsonResponse:
    return OrjsonResponse(
        {"error": code, "detail": detail, "allowed": allowed}, status_code=status, headers=headers
    )


def _validation_detail(exc: RequestValidationError) -> tuple[str, Any]:
    """One line per bad field (``query.k: Input should be less than or equal to 500``) and its limits."""
    parts, allowed = [], {}
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ()))
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
        ctx = err.get("ctx") or {}
        limits = {k: v for k, v in ctx.items() if k in ("ge", "le", "gt", "lt", "expected", "max_length")}
        if limits:
            allowed[loc] = {k: (v if isinstance(v, int | float | str) else str(v)) for k, v in limits.items()}
    return "; ".join(parts), (allowed or None)


def install_error_handlers(app: FastAPI, metrics: Metrics) -> None:
    """Register the handlers mapping domain and validation errors to JSON answers (counted by reason)."""

    async def api_error(_: Request, exc: Exception) -> Response:
        err = cast(ApiError, exc)  # registered for ApiError only
        metrics.error(err.code)
        return error_response(err.status, err.code, err.detail, err.allowed, err.headers)

    async def unknown_item(_: Request, exc: Exception) -> Response:
        metrics.error("unknown_item")
        return error_response(404, "unknown_item", str(exc), None)

    async def unknown_mode(_: Request, exc: Exception) -> Response:
        metrics.error("bad_request")
        allowed = getattr(exc, "available", None)
        return error_response(422, "bad_request", str(exc), {"mode": allowed})

    async def not_ready(_: Request, exc: Exception) -> Response:
        metrics.error("not_ready")
        return error_response(503, "not_ready", str(exc) or "no index version loaded", None)

    async def damaged(request: Request, exc: Exception) -> Response:
        err = cast(DamagedIndex, exc)  # registered for it only
        metrics.error("not_ready")
        ctx = getattr(request.app.state, "ctx", None)
        if ctx is not None:  # drop the version: /readyz turns unready, the poller falls back
            ctx.manager.mark_damaged(err.version, err.detail)
        return error_response(503, "index_damaged", f"{err}; the version is no longer served", None)

    async def unknown_variant(_: Request, exc: Exception) -> Response:
        metrics.error("bad_request")
        allowed = exc.allowed if isinstance(exc, UnknownVariant) else None
        return error_response(422, "bad_request", str(exc), {"variant": allowed})

    async def validation(_: Request, exc: Exception) -> Response:
        metrics.error("bad_request")
        detail, allowed = _validation_detail(cast(RequestValidationError, exc))
        return error_response(422, "bad_request", detail, allowed)

    async def http_error(_: Request, exc: Exception) -> Response:
        err = cast(StarletteHTTPException, exc)  # registered for it only
        code = {404: "not_found", 405: "method_not_allowed"}.get(err.status_code, "bad_request")
        metrics.error(code)
        # keeps the exception's headers: a 405 must say which methods are allowed (Allow)
        return error_response(err.status_code, code, str(err.detail), None, err.headers)

    async def internal(_: Request, exc: Exception) -> Response:
        # counted by the metrics middleware, which sees the exception pass
        log.exception("unhandled error: %s", exc)
        return error_response(500, "internal", "internal error (logged)", None)

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(UnknownItem, unknown_item)
    app.add_exception_handler(UnknownMode, unknown_mode)
    app.add_exception_handler(IndexNotReady, not_ready)
    app.add_exception_handler(DamagedIndex, damaged)
    # a version without a variant's channel is refused at reload; this covers a race with that check
    app.add_exception_handler(UnknownChannel, not_ready)
    app.add_exception_handler(UnknownVariant, unknown_variant)
    app.add_exception_handler(RequestValidationError, validation)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, internal)
