"""Item titles of a catalogue: what a person reads instead of an id (MovieLens movie titles).

A dataset whose source has titles keeps them in ``DatasetLayout.titles`` and an index version copies those
of its items into ``IndexVersionLayout.explorer_titles``: both are Parquet tables ``item_id`` (int64, the
id the service answers, unique) and ``title`` (string, non-null). Sources without titles (Taobao, most
generic logs) have no file; every reader treats that as "no titles" and shows ids instead. It lives in
``core`` because ``prepare`` writes it, ``build-index`` copies it and the service reads it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

SCHEMA = pa.schema([("item_id", pa.int64()), ("title", pa.string())])


def clean_titles(item_ids: pa.Array, titles: pa.Array) -> pa.Table:
    """An ``(item_id, title)`` table from two parallel columns: nulls and blank titles dropped, titles
    stripped of surrounding spaces, the first title of a repeated id kept (as the adapters keep the
    first row of a repeated movie)."""
    ids = pc.cast(item_ids, pa.int64())
    text = pc.utf8_trim_whitespace(pc.cast(titles, pa.string()))
    keep = pc.and_(pc.is_valid(ids), pc.fill_null(pc.greater(pc.utf8_length(text), 0), False))
    table = pa.table({"item_id": ids, "title": text}).filter(keep)
    raw = table.column("item_id").to_numpy()
    _, first = np.unique(raw, return_index=True)
    return table.take(pa.array(np.sort(first))).cast(SCHEMA)


def write_titles(path: Path, table: pa.Table) -> int:
    """Write an ``(item_id, title)`` table (ids unique, titles non-null: ``ValueError`` otherwise) as
    Parquet at ``path``; returns the number of titles. The caller's folder is already atomic."""
    table = table.select(["item_id", "title"]).cast(SCHEMA)
    if table.column("title").null_count or table.column("item_id").null_count:
        raise ValueError("titles: item_id and title must be non-null")
    if len(pc.unique(table.column("item_id"))) != table.num_rows:
        raise ValueError("titles: item ids must be unique")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return int(table.num_rows)


def read_titles(path: Path) -> pa.Table | None:
    """The ``(item_id, title)`` table at ``path``, or ``None`` when the catalogue has no titles."""
    path = Path(path)
    if not path.exists():
        return None
    return pq.read_table(path, schema=SCHEMA)


def titles_of(table: pa.Table, item_ids: npt.ArrayLike) -> list[str | None]:
    """The titles of ``item_ids`` in their order (``None`` where an item has none)."""
    ids = pa.array(np.asarray(item_ids, dtype=np.int64))
    pos = pc.index_in(ids, value_set=table.column("item_id").combine_chunks())
    out: list[str | None] = table.column("title").combine_chunks().take(pos).to_pylist()
    return out
