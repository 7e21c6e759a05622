"""Request limits as pure ASGI middleware: the size of the request head (431), the size of the body
(413) and how long its rest may take to arrive (408), each with the usual error body."""

from __future__ import annotations

import asyncio

from app.errors import error_response
from app.metrics import ASGIApp, Message, Receive, Scope, Send


class BodySizeLimit:
    """Refuse request heads over ``max_header_bytes`` (431, every method), bodies over ``max_bytes`` (413:
    at once from ``Content-Length``, else while reading chunks) and bodies whose rest does not arrive
    within ``body_timeout_s`` of the previous chunk (408: a client that declares 100 bytes and sends 10
    no longer holds its connection and a task forever).

    The body is read here (it is at most ``max_bytes``, and every route reads it whole anyway) and
    replayed to the app: an error raised inside the app's own body read would reach FastAPI's body
    parser, which turns any exception into a generic 400. uvicorn has no limit on the head: it is read
    before the app runs, so this bounds what is processed and answered, not what was buffered.
    """

    def __init__(
        self, app: ASGIApp, max_bytes: int, max_header_bytes: int = 16 << 10, body_timeout_s: float = 10.0
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.max_header_bytes = max_header_bytes
        self.body_timeout_s = body_timeout_s

    async def _refuse(self, detail: str, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(413, "payload_too_large", detail, {"max_body_bytes": self.max_bytes})
        await response(scope, receive, send)

    async def _timeout(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(
            408, "request_timeout", f"the request body did not arrive within body_timeout_s ({self.body_timeout_s:g} s)",
            {"body_timeout_s": self.body_timeout_s}, headers={"Connection": "close"},
        )  # fmt: skip
        await response(scope, receive, send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        head = 0
        for name, value in scope["headers"]:
            head += len(name) + len(value)
        if head > self.max_header_bytes:
            response = error_response(
                431, "headers_too_large", f"request headers of {head} bytes exceed max_header_bytes",
                {"max_header_bytes": self.max_header_bytes},
            )  # fmt: skip
            await response(scope, receive, send)
            return
        if scope["method"] in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                await self._refuse(f"body of {int(value)} bytes exceeds max_body_bytes", scope, receive, send)
                return
        chunks: list[bytes] = []
        size = 0
        try:
            message = await asyncio.wait_for(receive(), self.body_timeout_s)
        except TimeoutError:
            await self._timeout(scope, receive, send)
            return
        while message["type"] == "http.request":
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._refuse("body exceeds max_body_bytes", scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                message = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
                break
            try:
                message = await asyncio.wait_for(receive(), self.body_timeout_s)
            except TimeoutError:
                await self._timeout(scope, receive, send)
                return
        # the whole body as one message (or the disconnect of a client gone mid-body), then the rest
        pending: list[Message] = [message]

        async def replay() -> Message:
            return pending.pop() if pending else await receive()

        await self.app(scope, replay, send)
