"""Request body size limit as pure ASGI middleware (413 with the usual error body)."""

from __future__ import annotations

from app.errors import ApiError, error_response
from app.metrics import ASGIApp, Message, Receive, Scope, Send


class BodySizeLimit:
    """Refuse bodies over ``max_bytes``: at once from ``Content-Length``, else while reading chunks."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                response = error_response(
                    413, "payload_too_large", f"body of {int(value)} bytes exceeds max_body_bytes",
                    {"max_body_bytes": self.max_bytes},
                )  # fmt: skip
                await response(scope, receive, send)
                return
        seen = 0

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                # raised inside the route's body read, so the ApiError handler answers 413
                raise ApiError(413, "payload_too_large", "body exceeds max_body_bytes",
                               {"max_body_bytes": self.max_bytes})  # fmt: skip
            return message

        await self.app(scope, counting_receive, send)
