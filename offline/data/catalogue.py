"""The dataset's catalogue (``core.catalogue``), gathered from the whole log and the source's item listing.

Items without training behaviour are exactly the ones the model cannot place by itself, so the catalogue
reads the events *before* cleaning and splitting (test period, short dwells and unkept behaviours
included) and adds every item the source lists without behaviour (MovieLens: all of ``movies.csv``).
The catalogue depends on the log only, not on the split: a validation and a test dataset of one log
share it.
"""

from __future__ import annotations

from collections.abc import Sequence

import ibis.expr.types as ir
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from core.catalogue import Catalogue, attribute_column
from core.titles import titles_of
from core.types import IdArray
from core.vocab import lookup
from offline.data.config import BadInputError
from offline.data.engine import Engine
from offline.data.graphs import item_value_counts, item_values


def _values_on(items: IdArray, keys: IdArray, values: IdArray) -> IdArray:
    """``values`` of ``keys`` laid on ``items`` (``-1`` where an item has no entry)."""
    out = np.full(len(items), -1, dtype=np.int64)
    rows = lookup(keys, items)
    out[rows[rows >= 0]] = values[rows >= 0]
    return out


def event_attributes(
    engine: Engine, events: ir.Table, views: Sequence[str]
) -> tuple[IdArray, dict[str, IdArray]]:
    """Every item id of ``events`` (ascending) and its value in each side view (the most frequent one,
    ties: the smallest, as the link tables choose; ``-1`` when the item never has one)."""
    known = events.filter(events.item_id.notnull())
    counts = engine.cache(item_value_counts(known, [attribute_column(view) for view in views]))
    try:
        ids = engine.to_arrow(counts.select("item_id").distinct())
        items = np.sort(np.asarray(ids.column("item_id").to_numpy(), dtype=np.int64))
        attributes: dict[str, IdArray] = {}
        for view in views:
            values = engine.to_arrow(item_values(counts, attribute_column(view)))
            attributes[view] = _values_on(
                items,
                np.asarray(values.column("item_id").to_numpy(), dtype=np.int64),
                np.asarray(values.column("value").to_numpy(), dtype=np.int64),
            )
    finally:
        engine.uncache(counts)
    return items, attributes


def build_catalogue(
    items: IdArray,
    attributes: dict[str, IdArray],
    *,
    listing: pa.Table | None = None,
    titles: pa.Table | None = None,
) -> Catalogue:
    """The catalogue of the event items ``items`` (their ``attributes``, see :func:`event_attributes`)
    and of the ``listing`` (``item_id`` and ``<view>_id`` columns: the source's own item list, e.g.
    MovieLens movies; its first row of a repeated id counts). Where both know an item's attribute the
    listing wins (it is the source's description of the item). ``titles`` (``core.titles``) become the
    ``title`` column. Raises ``BadInputError`` on a listing without ``item_id`` or with null ids.
    """
    views = list(attributes)
    if listing is None or listing.num_rows == 0:
        merged = {v: attributes[v].copy() for v in views}
        catalogue_items = items
    else:
        if "item_id" not in listing.column_names or listing.column("item_id").null_count:
            raise BadInputError(
                f"item listing: needs a non-null item_id column (found {listing.column_names})"
            )
        raw_ids = np.asarray(listing.column("item_id").to_numpy(), dtype=np.int64)
        listed, first = np.unique(raw_ids, return_index=True)
        catalogue_items = np.union1d(items, listed)
        merged = {}
        for view in views:
            from_events = _values_on(catalogue_items, items, attributes[view])
            column = attribute_column(view)
            if column not in listing.column_names:
                merged[view] = from_events
                continue
            values = np.asarray(pc.fill_null(listing.column(column), -1).to_numpy(), dtype=np.int64)[first]
            from_listing = _values_on(catalogue_items, listed, values)
            merged[view] = np.where(from_listing >= 0, from_listing, from_events)
    title_array = None
    if titles is not None:
        title_array = pa.array(titles_of(titles, catalogue_items), pa.string())
    return Catalogue(catalogue_items.astype(np.int64), merged, title_array)
