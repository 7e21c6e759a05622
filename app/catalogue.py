"""The served versions' catalogue data (titles, attribute names, the 2-D map: ``index.explorer``) for the
explorer page and for the optional candidate fields of ``GET /i2i`` (``?fields=title``).

None of it is on the hot path: a version's data is read the first time someone asks for it (in a worker
thread), then kept as long as the version is served; ``GET /i2i`` without ``fields`` never comes here.
"""

from __future__ import annotations

import functools
import logging
import threading
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anyio.to_thread

from app.errors import ApiError
from app.query import query_params
from core.layout import IndexRoot
from index.errors import InvalidIndexVersion
from index.explorer import Explorer
from index.serving import ServingIndex

log = logging.getLogger("m2grl.app")

#: the optional candidate fields a client may ask for (``?fields=title``)
FIELDS = ("title",)
FIELDS_PARAMETER: dict[str, Any] = {
    "name": "fields",
    "in": "query",
    "required": False,
    "description": "Comma-separated optional candidate fields: 'title' adds each candidate's catalogue "
    "title (null where the dataset has none). Off by default: an answer without it does no extra work.",
    "schema": {"type": "string", "pattern": "^(title(,title)*)?$"},
    "example": "title",
}


class Catalogues:
    """``Explorer`` data per served ``ServingIndex``, loaded once per version from
    ``<index_root>/versions/<version>/`` and dropped with the version (weak keys)."""

    def __init__(self, index_root: Path) -> None:
        self.root = IndexRoot(Path(index_root))
        self._loaded: weakref.WeakKeyDictionary[ServingIndex, Explorer] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def cached(self, index: ServingIndex) -> Explorer | None:
        """The version's data when already loaded (no I/O)."""
        return self._loaded.get(index)

    def load(self, index: ServingIndex) -> Explorer:
        """The version's data, read on first use (blocking: call it from a worker thread). Raises
        ``ApiError`` 503 when the version's files cannot be read or do not match its manifest."""
        found = self._loaded.get(index)
        if found is not None:
            return found
        with self._lock:
            found = self._loaded.get(index)
            if found is None:
                try:
                    found = Explorer.load(self.root.version(index.version).root, index.manifest, index.labels)
                except (InvalidIndexVersion, OSError, ValueError) as exc:
                    log.warning("explorer data of version %s unreadable: %s", index.version, exc)
                    raise ApiError(
                        503,
                        "catalogue_unavailable",
                        f"version {index.version}: catalogue data unreadable: {exc}",
                    ) from None
                self._loaded[index] = found
        return found

    async def get(self, index: ServingIndex) -> Explorer:
        """``load`` off the event loop (cached data: no thread hop)."""
        found = self.cached(index)
        if found is not None:
            return found
        return await anyio.to_thread.run_sync(functools.partial(self.load, index))


def parse_fields(params: Mapping[str, str]) -> frozenset[str]:
    """The ``fields`` query parameter (comma-separated names of ``FIELDS``, exactly as documented: no
    spaces, no empty names) as a set; 422 naming the first bad name otherwise."""
    raw = params.get("fields", "")
    names = raw.split(",") if raw else []
    bad = [name for name in names if name not in FIELDS]
    if bad:
        raise ApiError(
            422, "bad_request", f"query.fields: {bad[0]!r} is not a candidate field",
            {"fields": list(FIELDS)},
        )  # fmt: skip
    return frozenset(names)


async def add_fields(
    catalogues: Catalogues, index: ServingIndex, query_string: bytes, answer: Mapping[str, Any]
) -> None:
    """Add the fields the query asks for (``parse_fields``) to each record of ``answer["candidates"]``,
    in place."""
    fields = parse_fields(query_params(query_string))
    if "title" in fields:
        candidates: list[dict[str, Any]] = answer["candidates"]
        explorer = await catalogues.get(index)
        titles = explorer.titles_of([c["item_id"] for c in candidates])
        for record, title in zip(candidates, titles, strict=True):
            record["title"] = title


def catalogues_of(state: Any) -> Catalogues:
    """The app's ``Catalogues`` (``app.state.catalogues``, set by ``app.main.create_app``)."""
    found: Catalogues | None = getattr(state, "catalogues", None)
    if found is None:
        raise ApiError(503, "not_ready", "the service is starting")
    return found


def with_fields_parameter(openapi_extra: dict[str, Any]) -> dict[str, Any]:
    """``openapi_extra`` of a retrieval route with the ``fields`` query parameter documented too."""
    return {**openapi_extra, "parameters": [*openapi_extra.get("parameters", []), FIELDS_PARAMETER]}
