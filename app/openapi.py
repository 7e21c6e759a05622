"""The OpenAPI document with what only the settings and the served version know: ``k``'s maximum
(``max_k``), the user and variant headers under their configured names, the bearer scheme of the admin
routes, and the form of the ids the query parameters take (integers, or the dataset's own strings when
the version CURRENT serves was built from string ids: ``app.ids``)."""

from __future__ import annotations

import copy
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


#: the query and path parameters that name items, and those that name categories
ITEM_PARAMETERS = ("item_id", "recent_items")
CATEGORY_PARAMETERS = ("exclude_categories",)
#: examples of the string forms
STRING_EXAMPLES = {
    "item_id": "B07XJ8C8F5",
    "recent_items": "B07XJ8C8F5,B01N5IB20Q",
    "exclude_categories": "Drama",
}


def id_kinds(app: FastAPI, category_view: str) -> tuple[bool, bool]:
    """Whether CURRENT's item ids and category ids are strings (both False before a version loads)."""
    ctx = getattr(app.state, "ctx", None)
    current = ctx.manager.served.current if ctx is not None else None
    labels = current.labels if current is not None else None
    if labels is None:
        return False, False
    return labels.item is not None, labels.of(category_view) is not None


def with_string_ids(schema: dict[str, Any], items: bool, categories: bool) -> dict[str, Any]:
    """A copy of ``schema`` whose item (``items``) and category (``categories``) parameters take the
    dataset's own string ids instead of integers."""
    names = (ITEM_PARAMETERS if items else ()) + (CATEGORY_PARAMETERS if categories else ())
    out = copy.deepcopy(schema)
    for methods in out.get("paths", {}).values():
        for op in methods.values():
            for param in op.get("parameters", []):
                if param.get("name") in names and param.get("in") in ("path", "query"):
                    param["schema"] = (
                        {"type": "string", "minLength": 1} if param["in"] == "path" else {"type": "string"}
                    )
                    param["example"] = STRING_EXAMPLES[param["name"]]
    return out


def install_openapi(app: FastAPI, settings: Settings) -> None:
    """Replace ``app.openapi`` by a builder that adds the settings' bounds, headers and schemes, cached
    per form of the served version's ids (they change only when a version of the other form loads)."""
    documents: dict[tuple[bool, bool], dict[str, Any]] = {}

    def build() -> dict[str, Any]:
        kinds = id_kinds(app, settings.category_view)
        found = documents.get(kinds)
        if found is None:
            found = documents[kinds] = base() if kinds == (False, False) else with_string_ids(base(), *kinds)
        app.openapi_schema = found
        return found

    def base() -> dict[str, Any]:
        if (False, False) in documents:
            return documents[(False, False)]
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
        documents[(False, False)] = schema
        return schema

    app.openapi = build  # type: ignore[method-assign]
