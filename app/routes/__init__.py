"""One thin router per resource; ``ROUTERS`` is what ``app.main`` mounts, ``HOT_ROUTES`` what it puts in
front of them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Route
from starlette.types import Receive, Scope, Send

from app.routes import admin, events, feedback, health, i2i, u2i

ROUTERS: tuple[APIRouter, ...] = (
    i2i.router, u2i.router, events.router, feedback.router, admin.router, health.router,
)  # fmt: skip


class HotRoute(Route):
    """A plain Starlette route serving a path that a FastAPI route of ``ROUTERS`` also declares.

    Why: FastAPI's per-request route handling (its router's candidate matching, the dependency solver
    and endpoint runner) cost about 35 of the 108 us an in-process ``GET /i2i`` took, more than the
    retrieval itself. The hot endpoints take only the ``Request`` and parse their own parameters
    (``app.query``), so they lose nothing by being served by Starlette's ``request_response``; the
    FastAPI declaration of the same endpoint stays for the OpenAPI document (a test checks that both
    name the same function). Errors still go through the app's exception handlers.

    The route puts itself in ``scope["route"]``, as FastAPI's routes do, so the metrics middleware labels
    requests with the path template.
    """

    def __init__(self, path: str, endpoint: Callable[[Request], Awaitable[Response]], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            # no per-route exception wrapper: an error raised here reaches the app's ExceptionMiddleware,
            # which answers it with the same handlers (one try/except and send wrapper less per request)
            response = await endpoint(Request(scope, receive, send))
            await response(scope, receive, send)

        self.app = app

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child = super().matches(scope)
        if match is not Match.NONE:
            child["route"] = self
        return match, child


HOT_ROUTES: tuple[HotRoute, ...] = (
    HotRoute("/i2i/{item_id}", i2i.get_i2i, methods=["GET"], include_in_schema=False),
    HotRoute("/u2i", u2i.get_u2i, methods=["GET"], include_in_schema=False),
)
