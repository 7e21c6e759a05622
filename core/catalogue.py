"""The catalogue of a dataset: every item the source knows, with its side attributes and title.

Vocabularies hold only the items with training behaviour; a new (cold) item is placed from its side
attributes (``model.cold``), so the dataset keeps every item in ``DatasetLayout.catalogue``: a Parquet
table with ``item_id`` (int64, unique, ascending), one int64 column ``<view>_id`` per side view (null where
unknown) and, when the source has titles, ``title`` (string, null where unknown). Ids are those of the
events (dense ids of string-labelled views, ``core.id_labels``). It lives in ``core`` because ``prepare``
writes it and the evaluation harness and ``build-index`` read it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from core.types import IdArray

ITEM_COLUMN = "item_id"
TITLE_COLUMN = "title"


class CatalogueError(ValueError):
    """A catalogue table or file is inconsistent (repeated ids, a bad column); the message says which."""


def attribute_column(view: str) -> str:
    """The catalogue column of side view ``view`` (``category`` -> ``category_id``)."""
    return f"{view}_id"


@dataclass(frozen=True)
class Catalogue:
    """Every item with its side attributes.

    - ``items``: int64 ``[n]`` item ids, unique and ascending.
    - ``attributes``: side view -> int64 ``[n]`` the item's id in that view, ``-1`` unknown.
    - ``titles``: string ``[n]`` (null where unknown), or ``None`` when the source has no titles.
    """

    items: IdArray
    attributes: Mapping[str, IdArray]
    titles: pa.Array | None = None

    def __post_init__(self) -> None:
        items = self.items
        if items.ndim != 1 or items.dtype != np.int64:
            raise CatalogueError(f"items must be a 1-D int64 array, got {items.dtype} {items.shape}")
        if len(items) > 1 and not bool(np.all(items[1:] > items[:-1])):
            raise CatalogueError("items must be unique and ascending")
        for view, values in self.attributes.items():
            if values.shape != items.shape or values.dtype != np.int64:
                raise CatalogueError(
                    f"attributes[{view!r}] must be int64 with one entry per item ({len(items)}), "
                    f"got {values.dtype} {values.shape}"
                )
            if len(values) and int(values.min()) < -1:
                raise CatalogueError(f"attributes[{view!r}]: ids must be >= 0, or -1 for unknown")
        if self.titles is not None and len(self.titles) != len(items):
            raise CatalogueError(f"titles has {len(self.titles)} entries, items {len(items)}")

    def __len__(self) -> int:
        return len(self.items)

    @property
    def views(self) -> list[str]:
        return list(self.attributes)

    def rows_of(self, item_ids: npt.ArrayLike) -> IdArray:
        """Catalogue row of each id, ``-1`` for an id the catalogue does not hold."""
        ids = np.asarray(item_ids, dtype=np.int64)
        if len(self.items) == 0:
            return np.full(ids.shape, -1, dtype=np.int64)
        pos = np.minimum(np.searchsorted(self.items, ids), len(self.items) - 1)
        return np.where(self.items[pos] == ids, pos, -1).astype(np.int64)

    def attributes_of(self, view: str, item_ids: npt.ArrayLike) -> IdArray:
        """Side attribute ``view`` of each id (``-1`` for an unknown value or an id not in the catalogue)."""
        if view not in self.attributes:
            raise KeyError(f"the catalogue has no view {view!r}; it has {self.views}")
        rows = self.rows_of(item_ids)
        return np.where(rows >= 0, self.attributes[view][np.maximum(rows, 0)], -1).astype(np.int64)

    def to_table(self) -> pa.Table:
        columns: dict[str, pa.Array] = {ITEM_COLUMN: pa.array(self.items, pa.int64())}
        for view, values in self.attributes.items():
            columns[attribute_column(view)] = pa.array(values, pa.int64(), mask=values < 0)
        if self.titles is not None:
            columns[TITLE_COLUMN] = self.titles.cast(pa.string())
        return pa.table(columns)

    @classmethod
    def from_table(cls, table: pa.Table) -> Catalogue:
        """From a table of the file's shape: ``item_id``, ``<view>_id`` columns, optional ``title``."""
        if ITEM_COLUMN not in table.column_names:
            raise CatalogueError(f"no {ITEM_COLUMN!r} column (found {table.column_names})")
        ids = table.column(ITEM_COLUMN)
        if ids.null_count:
            raise CatalogueError(f"{ids.null_count} null item ids")
        items = np.asarray(ids.to_numpy(), dtype=np.int64)
        order = np.argsort(items, kind="stable")
        if len(items) > 1 and bool(np.any(items[order][1:] == items[order][:-1])):
            raise CatalogueError("item ids must be unique")
        attributes: dict[str, IdArray] = {}
        for name in table.column_names:
            if name in (ITEM_COLUMN, TITLE_COLUMN):
                continue
            if not name.endswith("_id") or not pa.types.is_integer(table.schema.field(name).type):
                raise CatalogueError(f"column {name!r} is neither an integer <view>_id column nor title")
            values = np.asarray(pc.fill_null(table.column(name), -1).to_numpy(), dtype=np.int64)
            attributes[name.removesuffix("_id")] = values[order]
        titles = None
        if TITLE_COLUMN in table.column_names:
            titles = table.column(TITLE_COLUMN).combine_chunks().cast(pa.string()).take(pa.array(order))
        return cls(items[order], attributes, titles)


def write_catalogue(path: Path, catalogue: Catalogue) -> int:
    """Write ``catalogue`` as Parquet at ``path`` (the caller's folder is already atomic); returns its size."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(catalogue.to_table(), path, compression="zstd")
    return len(catalogue)


def read_catalogue(path: Path) -> Catalogue | None:
    """The catalogue at ``path``, or ``None`` for a dataset written before datasets carried one."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise CatalogueError(f"{path} is not a readable Parquet file: {exc}") from exc
    try:
        return Catalogue.from_table(table)
    except CatalogueError as exc:
        raise CatalogueError(f"{path}: {exc}") from exc
