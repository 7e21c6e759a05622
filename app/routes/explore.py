"""``/explore``: a page for people to see what the service recommends and why, and the JSON it reads.

The page itself (``app/static/explore.*``: plain HTML, JS and CSS, nothing fetched from the network) asks
``GET /i2i`` exactly as a client does, with the user and variant headers, so exclusions and A/B variants
are the real ones; these routes add only what a client does not need: search by id or title, item cards
(title, attribute names, map position, training events) and the 2-D map of the item space. Ids are the
ones a client uses (the dataset's own string ids in a version with labels, ``app.ids``), so any id the
page shows can be asked of ``GET /i2i``. Mounted only
when ``docs_pages`` is on; kept out of the OpenAPI document (not an API for clients). The handlers are
plain functions: FastAPI runs them in its thread pool, off the event loop that serves ``/i2i``.
"""

from __future__ import annotations

import functools
from importlib.resources import files
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from app.catalogue import catalogues_of
from app.deps import context_of
from app.errors import ApiError, OrjsonResponse
from app.ids import categories_out, items_out
from app.query import MODES
from index.explorer import MAX_SEARCH, Explorer, ItemCard
from index.labels import VersionLabels, ViewLabels

router = APIRouter(prefix="/explore", include_in_schema=False)

#: the page's files (``app/static``) and their media types; nothing else is served from there
ASSETS = {"explore.js": "text/javascript", "explore.css": "text/css"}
#: the page and its assets load nothing from elsewhere: the browser refuses any other origin
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}
#: most ids one ``/explore/items`` or ``/explore/labels`` call may ask about
MAX_IDS = 1000
#: most points ``/explore/map`` returns
MAX_POINTS = 50_000


@functools.cache
def _asset(name: str) -> bytes:
    return files("app").joinpath("static", name).read_bytes()


def _ids(raw: str, field: str) -> list[int]:
    parts = [p.strip() for p in raw.split(",") if p.strip()]
    if len(parts) > MAX_IDS:
        raise ApiError(
            422, "bad_request", f"query.{field}: more than {MAX_IDS} ids", {field: {"max": MAX_IDS}}
        )
    try:
        return [int(p) for p in parts if abs(int(p)) < 2**63]
    except ValueError:
        raise ApiError(
            422, "bad_request", f"query.{field}: expected comma-separated integers, got {raw[:80]!r}",
            {field: "comma-separated integers"},
        ) from None  # fmt: skip


def _label_ids(raw: str, field: str, names: ViewLabels) -> list[int]:
    """Comma-separated labels (exact text) as dense ids, ``-1`` for an unknown one."""
    parts = [p for p in raw.split(",") if p]
    if len(parts) > MAX_IDS:
        raise ApiError(
            422, "bad_request", f"query.{field}: more than {MAX_IDS} ids", {field: {"max": MAX_IDS}}
        )
    return names.ids_of(parts)


def _explorer(request: Request, version: str | None = None) -> tuple[Explorer, VersionLabels | None]:
    """The served version's explorer data and labels (None: integer ids)."""
    ctx = context_of(request)
    index = ctx.manager.served.get(version)
    return catalogues_of(request.app.state).load(index), index.labels


def _card(card: ItemCard | None, labels: VersionLabels | None) -> dict[str, Any] | None:
    """A card as JSON, in the ids a client uses."""
    if card is None:
        return None
    out = card.to_dict()
    if labels is None:
        return out
    out["item_id"] = items_out(labels, (card.item_id,))[0]
    for view, (dense, _) in card.attributes.items():
        out["attributes"][view]["id"] = categories_out(labels, view, (dense,))[0]
    return out


@router.get("")
def page() -> Response:
    return Response(_asset("explore.html"), media_type="text/html; charset=utf-8", headers=PAGE_HEADERS)


@router.get("/assets/{name}")
def asset(name: str) -> Response:
    media = ASSETS.get(name)
    if media is None:
        raise ApiError(404, "not_found", f"no explorer asset {name!r}", sorted(ASSETS))
    return Response(_asset(name), media_type=f"{media}; charset=utf-8", headers=PAGE_HEADERS)


@router.get("/config")
def config(request: Request) -> OrjsonResponse:
    """What the page needs to ask ``GET /i2i`` as a client would: header names, variants, k bounds, the
    served version and whether it has titles."""
    ctx = context_of(request)
    settings = ctx.settings
    explorer, _ = _explorer(request)
    return OrjsonResponse(
        {
            "version": explorer.version,
            "user_header": settings.user_header,
            "variant_header": settings.variant_header,
            "variants": settings.variant_names,
            "modes": list(MODES),
            "default_k": min(settings.default_k, 10),
            "max_k": settings.max_k,
            "category_view": settings.category_view,
            "has_titles": explorer.has_titles,
            "has_map": explorer.coords is not None,
        }
    )


@router.get("/search")
def search(
    request: Request,
    q: Annotated[str, Query(max_length=200)] = "",
    limit: Annotated[int, Query(ge=1, le=MAX_SEARCH)] = 20,
) -> OrjsonResponse:
    """Items whose id is ``q`` or whose title contains it, as cards."""
    explorer, labels = _explorer(request)
    item = labels.item if labels is not None else None
    found = explorer.search(q, limit, None if item is None else lambda text: item.id_of(text))
    cards = [_card(c, labels) for c in explorer.cards(found) if c is not None]
    return OrjsonResponse({"query": q, "version": explorer.version, "results": cards})


@router.get("/items")
def items(
    request: Request,
    ids: Annotated[str, Query(max_length=25 * MAX_IDS)] = "",
    version: Annotated[str | None, Query(max_length=128)] = None,
) -> OrjsonResponse:
    """Cards of ``ids`` (null for an id the version does not hold), from ``version`` (an answer's
    ``index_version``; default CURRENT) so a pinned variant's candidates are described by their own data."""
    explorer, labels = _explorer(request, _served_name(request, version))
    item = labels.item if labels is not None else None
    wanted = _ids(ids, "ids") if item is None else _label_ids(ids, "ids", item)
    out = [_card(c, labels) for c in explorer.cards(wanted)]
    return OrjsonResponse({"version": explorer.version, "items": out})


@router.get("/labels")
def labels(
    request: Request,
    ids: Annotated[str, Query(max_length=25 * MAX_IDS)] = "",
    view: Annotated[str | None, Query(max_length=64)] = None,
) -> OrjsonResponse:
    """Names of attribute ids of ``view`` (default: the category view): ``{id: name or null}``; in a view
    with string ids, an id is its own name (null when the version does not know it)."""
    explorer, labels = _explorer(request)
    name = view or context_of(request).settings.category_view
    names = labels.of(name) if labels is not None else None
    if names is not None:
        parts = [p for p in ids.split(",") if p]
        known = _label_ids(ids, "ids", names)
        return OrjsonResponse(
            {"view": name, "labels": {p: p if i >= 0 else None for p, i in zip(parts, known, strict=True)}}
        )
    return OrjsonResponse(
        {
            "view": name,
            "labels": {str(i): explorer.label(name, i) if i >= 0 else None for i in _ids(ids, "ids")},
        }
    )


@router.get("/map")
def item_map(
    request: Request, max_points: Annotated[int, Query(ge=1, le=MAX_POINTS)] = 5000
) -> OrjsonResponse:
    """Up to ``max_points`` points of the version's 2-D map (``Explorer.map_points``), with titles."""
    explorer, labels = _explorer(request)
    view = context_of(request).settings.category_view
    out = explorer.map_points(max_points, view)
    out["titles"] = explorer.titles_of(out["ids"]) if explorer.has_titles else None
    if labels is not None:
        out["ids"] = items_out(labels, out["ids"])
        if labels.of(view) is not None:
            # categories in the ids a client uses; a string id is its own name
            out["category"] = categories_out(labels, view, out["category"])
            out["category_labels"] = {c: c for c in out["category"] if c is not None}
    return OrjsonResponse(out)


def _served_name(request: Request, version: str | None) -> str | None:
    """``version`` when it is served (CURRENT's name or a pinned version), None (CURRENT) when not given;
    404 naming the served ones otherwise."""
    if not version:
        return None
    served = context_of(request).manager.served
    current = served.current
    if current is not None and current.version == version:
        return None
    if version in served.pinned:
        return version
    names = sorted({*(served.pinned or {}), *([current.version] if current is not None else [])})
    raise ApiError(404, "not_found", f"version {version!r} is not served", names)
