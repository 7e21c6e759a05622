"""The OpenAPI document with what only the settings know: ``k``'s maximum (``max_k``), the user and
variant headers under their configured names, the bearer scheme of the admin routes."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from app.schemas import MAX_USER_ID_CHARS
from app.settings import Settings

#: operations that read the user and variant headers (POST /events the user header only)
RETRIEVAL = {("/i2i/{item_id}", "get"), ("/i2i:batch", "post"), ("/u2i", "get")}
EVENTS = ("/events", "post")


def headers_for(settings: Settings) -> list[dict[str, Any]]:
    """The user and variant header parameters, named as configured."""
    return [
        {"name": settings.user_header, "in": "header", "required": False,
         "description": "User id: A/B assignment and recent categories.",
         "schema": {"type": "string", "maxLength": MAX_USER_ID_CHARS}},
        {"name": settings.variant_header, "in": "header", "required": False,
         "description": "Force a declared A/B variant.",
         "schema": {"type": "string", "enum": settings.variant_names}},
    ]  # fmt: skip


def install_openapi(app: FastAPI, settings: Settings) -> None:
    """Replace ``app.openapi`` by a cached builder that adds the settings' bounds, headers and schemes."""

    def build() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        for path, methods in schema.get("paths", {}).items():
            for method, op in methods.items():
                for param in op.get("parameters", []):
                    if param.get("name") == "k" and param.get("in") == "query":
                        param["schema"]["maximum"] = settings.max_k
                if (path, method) in RETRIEVAL:
                    op.setdefault("parameters", []).extend(headers_for(settings))
                elif (path, method) == EVENTS:
                    op.setdefault("parameters", []).extend(headers_for(settings)[:1])
                if path.startswith("/admin/"):
                    op["security"] = [{"admin_token": []}]
        components = schema.setdefault("components", {})
        batch = components.get("schemas", {}).get("BatchRequest", {}).get("properties", {}).get("k")
        if batch is not None:
            for option in batch.get("anyOf", [batch]):
                if option.get("type") == "integer":
                    option["maximum"] = settings.max_k
        components.setdefault("securitySchemes", {})["admin_token"] = {
            "type": "http", "scheme": "bearer", "description": "The service's admin_token setting.",
        }  # fmt: skip
        app.openapi_schema = schema
        return schema

    app.openapi = build  # type: ignore[method-assign]
