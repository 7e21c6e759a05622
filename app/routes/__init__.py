"""One thin router per resource; ``ROUTERS`` is what ``app.main`` mounts."""

from __future__ import annotations

from fastapi import APIRouter

from app.routes import admin, events, health, i2i, u2i

ROUTERS: tuple[APIRouter, ...] = (i2i.router, u2i.router, events.router, admin.router, health.router)
