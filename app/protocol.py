"""uvicorn's HTTP protocol with the service's JSON error body on the 400s it answers itself.

A request that the HTTP parser refuses (``Content-Length: -1``, a NUL byte in a header, a malformed
request line) never reaches the ASGI app: uvicorn answers it with a plain-text 400. ``m2grl serve``
runs this subclass so that those answers carry ``{"error": "bad_request", "detail", "allowed"}`` like
every other error. The container's start script (``scripts/container_start.sh serve``) runs
``m2grl serve`` too.
"""

from __future__ import annotations

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

_STATUS_LINE = b"HTTP/1.1 400 Bad Request\r\n"


class JsonErrorsHttpToolsProtocol(HttpToolsProtocol):
    """``HttpToolsProtocol`` whose parser-level 400 is JSON (then the connection closes, as before)."""

    def send_400_response(self, msg: str) -> None:
        body = orjson.dumps(
            {"error": "bad_request", "detail": f"unreadable HTTP request: {msg}", "allowed": None}
        )
        content = [_STATUS_LINE]
        for name, value in self.server_state.default_headers:
            content.extend([name, b": ", value, b"\r\n"])
        content.extend(
            [
                b"content-type: application/json\r\n",
                b"content-length: " + str(len(body)).encode("ascii") + b"\r\n",
                b"connection: close\r\n",
                b"\r\n",
                body,
            ]
        )
        self.transport.write(b"".join(content))
        self.transport.close()
