"""Vocabularies of string ids: the user's own ids (``"B07XJ8C8F5"``, ``"apple"``) <-> dense int64 ids.

Adapters map every string id column to dense ids ``0..n-1`` in sorted label order and the dataset
keeps one table per view (``DatasetLayout.labels(view)``; ``"user"`` for user ids) with columns
``id`` (int64, ``0..n-1``) and ``label`` (string, unique). A view without a file has integer ids of its
own. It lives in ``core`` because every stage, the service included, translates ids through it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

SCHEMA = pa.schema([("id", pa.int64()), ("label", pa.string())])


@dataclass(frozen=True)
class IdLabels:
    """The string labels of one view; ``labels[i]`` is the label of dense id ``i``."""

    labels: pa.Array

    def __post_init__(self) -> None:
        if self.labels.null_count or len(pc.unique(self.labels)) != len(self.labels):
            raise ValueError("id labels must be distinct and non-null")

    @classmethod
    def from_table(cls, table: pa.Table) -> IdLabels:
        """From an ``(id, label)`` table whose ids are ``0..n-1`` in any order."""
        ids = table.column("id").to_numpy()
        if not np.array_equal(np.sort(ids), np.arange(len(ids))):
            raise ValueError("id labels: ids must be 0..n-1")
        order = np.argsort(ids)
        return cls(table.column("label").combine_chunks().take(pa.array(order)).cast(pa.string()))

    def __len__(self) -> int:
        return len(self.labels)

    def to_table(self) -> pa.Table:
        return pa.table({"id": pa.array(np.arange(len(self.labels), dtype=np.int64)), "label": self.labels})

    def to_labels(self, ids: npt.ArrayLike) -> list[str | None]:
        """Labels of dense ids (``None`` for an id outside ``0..n-1``, e.g. ``-1``)."""
        arr = np.asarray(ids, dtype=np.int64)
        inside = (arr >= 0) & (arr < len(self.labels))
        taken = self.labels.take(pa.array(np.where(inside, arr, 0), mask=~inside))
        return taken.to_pylist()

    def to_ids(self, labels: Sequence[str] | pa.Array) -> npt.NDArray[np.int64]:
        """Dense ids of labels (``-1`` for an unknown label)."""
        pos = pc.index_in(pa.array(labels, pa.string()), value_set=self.labels)
        return np.asarray(pc.fill_null(pos, -1).cast(pa.int64()).to_numpy(), dtype=np.int64)


def write_id_labels(path: Path, labels: IdLabels) -> None:
    """Write ``labels`` as an ``(id, label)`` Parquet file (the caller's folder is already atomic)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(labels.to_table().cast(SCHEMA), path)


def read_id_labels(path: Path) -> IdLabels | None:
    """The labels stored at ``path``, or ``None`` when the view has integer ids (no file)."""
    path = Path(path)
    if not path.exists():
        return None
    return IdLabels.from_table(pq.read_table(path))
