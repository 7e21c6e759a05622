"""The user's own ids at the service's edge: a version built from string ids (``index.labels``) is asked
and answers in those strings, while its lookups speak the dense ids stored in the version.

Requests name items and categories as the version speaks them; these functions turn them into dense ids
on the way in and back into the user's ids on the way out, with the lookups built once when the version
loaded (``ViewLabels``: a dict one way, a list the other). In a version with labels for only some views
(MovieLens: integer items, genre-string categories) the others keep their integer ids. Routes call here
only when ``index.labels`` is not None (except for the body checks, which also refuse strings sent to a
version of integer ids), so integer-id versions answer exactly as before.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

from app.errors import ApiError
from app.query import parse_item_id
from app.stores import Recent
from index.errors import UnknownItem
from index.labels import VersionLabels, ViewLabels

#: an id as the API speaks it: an int64, or the user's own string id in a version with labels
ApiId = int | str
_INTEGER = re.compile(r"-?[0-9]{1,19}")


def trigger_of(labels: VersionLabels, raw: str) -> int:
    """The dense id of a path ``item_id`` (a label when the item view has labels); raises
    ``UnknownItem`` naming the label, ``ApiError`` 422 for a malformed integer id."""
    if labels.item is None:
        return parse_item_id(raw)
    found = labels.item.id_of(raw)
    if found < 0:
        raise UnknownItem(raw)
    return found


def _texts(values: Sequence[ApiId], where: str, expect_labels: bool) -> list[str] | None:
    """Body ids as label texts (a JSON number read as its decimal text) when ``expect_labels``; else
    None after checking that every value is an integer (422 naming the first string)."""
    if expect_labels:
        return [v if isinstance(v, str) else str(v) for v in values]
    for i, value in enumerate(values):
        if isinstance(value, str):
            raise ApiError(
                422, "bad_request",
                f"{where.format(i)}: expected an int64 integer (this index version has integer ids), got {value!r}",
                {where.format(i): "int64 integer"},
            )  # fmt: skip
    return None


def check_items(labels: VersionLabels | None, values: Sequence[ApiId], where: str) -> None:
    """422 when a string names an item of a version whose item ids are integers (ids not looked up)."""
    _texts(values, where, labels is not None and labels.item is not None)


def body_items(labels: VersionLabels | None, values: Sequence[ApiId], where: str) -> list[int]:
    """Dense ids of the item ids of a request body (``-1`` for an unknown label); ``where`` formats the
    field of value ``i`` for a 422 (``"body.item_ids.{}"``)."""
    item = labels.item if labels is not None else None
    texts = _texts(values, where, item is not None)
    if texts is None or item is None:
        return [int(v) for v in values]
    return item.ids_of(texts)


def body_categories(
    labels: VersionLabels | None, view: str, values: Sequence[ApiId], where: str
) -> list[int]:
    """Dense ids of the category ids of a request body; unknown labels are dropped (no item has them)."""
    names = labels.of(view) if labels is not None else None
    texts = _texts(values, where, names is not None)
    if texts is None or names is None:
        return [int(v) for v in values]
    return [i for i in names.ids_of(texts) if i >= 0]


def _out(names: ViewLabels | None, ids: Iterable[int]) -> list[Any]:
    return names.names_of(ids) if names is not None else list(ids)


def items_out(labels: VersionLabels, ids: Iterable[int]) -> list[ApiId | None]:
    """The user's ids of dense item ids."""
    return _out(labels.item, ids)


def categories_out(labels: VersionLabels, view: str, ids: Iterable[int]) -> list[ApiId | None]:
    """The user's ids of dense ids of ``view`` (None for ``-1`` in a view with labels)."""
    return _out(labels.of(view), ids)


def sorted_categories(labels: VersionLabels, view: str, ids: Iterable[int]) -> list[ApiId]:
    """The user's ids of known dense category ids (``-1`` left out), sorted as the answers list them."""
    out: list[Any] = [c for c in categories_out(labels, view, ids) if c is not None and c != -1]
    return sorted(out)


def label_records(labels: VersionLabels, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Candidate records (``NeighbourResult.records()``, fresh dicts) with the user's item and attribute
    ids, in place; returns ``records``."""
    item = labels.item.names if labels.item is not None else None
    views = [(view, names.names) for view, names in labels.attributes.items()]
    for record in records:
        if item is not None:
            record["item_id"] = item[record["item_id"]]
        attributes = record["attributes"]
        for view, names in views:
            if view in attributes:
                attributes[view] = names[attributes[view]]
    return records


def label_answer(labels: VersionLabels, body: dict[str, Any], category_view: str) -> None:
    """A ``GET /i2i`` answer in the user's ids, in place: trigger, excluded categories, candidates."""
    body["trigger"] = items_out(labels, (body["trigger"],))[0]
    body["excluded_categories"] = sorted_categories(labels, category_view, body["excluded_categories"])
    label_records(labels, body["candidates"])


# ---------------------------------------------------------------------------------- the recent store


def _text(names: ViewLabels | None, ids: Sequence[int]) -> list[str | None]:
    if names is not None:
        return names.names_of(ids)
    return [str(i) if i >= 0 else None for i in ids]


def stored(
    labels: VersionLabels, category_view: str, items: Sequence[int], categories: Sequence[int]
) -> tuple[list[str], list[str | None]]:
    """Dense items and categories as the labelled store space keeps them: the text of the user's ids
    (None for an unknown category), so any version built from the same kind of ids reads them back."""
    texts = _text(labels.item, items)
    return [t for t in texts if t is not None], _text(labels.of(category_view), categories)


def _dense(names: ViewLabels | None, texts: Iterable[str]) -> list[int]:
    if names is not None:
        return [i for i in names.ids_of(texts) if i >= 0]
    return [int(t) for t in texts if _INTEGER.fullmatch(t)]


def recent_dense(labels: VersionLabels, category_view: str, recent: Recent[str]) -> Recent[int]:
    """What the labelled store space holds of a user, in this version's dense ids (ids it does not
    know are dropped)."""
    return Recent(
        frozenset(_dense(labels.of(category_view), recent.categories)),
        tuple(_dense(labels.item, recent.items)),
    )
