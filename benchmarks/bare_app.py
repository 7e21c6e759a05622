"""The reference for benchmarks/serve.py: a bare FastAPI endpoint returning a constant list shaped like
an /i2i answer (50 candidates), run under the same uvicorn options as the service."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

CONSTANT: list[dict[str, Any]] = [
    {"item_id": 1000 + i, "score": 1.0 - i / 100, "attributes": {"category": i % 7, "shop": i % 5}}
    for i in range(50)
]


def create_app() -> FastAPI:
    app = FastAPI()

    @app.get("/bare/{item_id}")
    async def bare(item_id: int) -> list[dict[str, Any]]:
        return CONSTANT

    return app
