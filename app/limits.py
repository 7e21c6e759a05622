"""Request body size limit as pure ASGI middleware (413 with the usual error body)."""

from __future__ import annotations

from app.errors import error_response
from app.metrics import ASGIApp, Message, Receive, Scope, Send


class BodySizeLimit:
    """Refuse bodies over ``max_bytes``: at once from ``Content-Length``, else while reading chunks.

    The body is read here (it is at most ``max_bytes``, and every route reads it whole anyway) and
    replayed to the app: an error raised inside the app's own body read would reach FastAPI's body
    parser, which turns any exception into a generic 400.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def _refuse(self, detail: str, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(413, "payload_too_large", detail, {"max_body_bytes": self.max_bytes})
        await response(scope, receive, send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                await self._refuse(f"body of {int(value)} bytes exceeds max_body_bytes", scope, receive, send)
                return
        chunks: list[bytes] = []
        size = 0
        message = await receive()
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
            message = await receive()
        # the whole body as one message (or the disconnect of a client gone mid-body), then the rest
        pending: list[Message] = [message]

        async def replay() -> Message:
            return pending.pop() if pending else await receive()

        await self.app(scope, replay, send)
