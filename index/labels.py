"""The user's own ids of an index version: when the dataset had string ids (``core.id_labels``), the
version keeps the labels of its item view and side views under ``labels/<view>.parquet``
(``IndexVersionLayout.labels``), listed in the manifest's ``labels`` and covered by its checksums.

Lookups and artifacts keep speaking dense ids; the service translates at its boundary with the
``ViewLabels`` built here once per version, when it is loaded (a dict one way, a list the other), so a
request pays a dict lookup per id and nothing else. A version without labels has ``labels`` None.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from core.id_labels import IdLabels, read_id_labels, write_id_labels
from core.layout import DatasetLayout, IndexVersionLayout
from index.errors import InvalidIndexVersion


@dataclass(frozen=True, eq=False)
class ViewLabels:
    """One view's labels, both ways: ``names[i]`` is dense id ``i``'s label, plus one trailing ``None``
    so that ``names[-1]`` (the unknown id) reads as None without a test; ``ids`` is the inverse."""

    names: list[str | None]
    ids: dict[str, int]

    @classmethod
    def of(cls, labels: IdLabels) -> ViewLabels:
        names: list[str] = labels.labels.to_pylist()
        return cls(names=[*names, None], ids={name: i for i, name in enumerate(names)})

    def __len__(self) -> int:
        return len(self.ids)

    def id_of(self, label: str) -> int:
        """Dense id of ``label`` (``-1`` when unknown)."""
        return self.ids.get(label, -1)

    def ids_of(self, labels: Iterable[str]) -> list[int]:
        """Dense ids of ``labels`` in order (``-1`` for an unknown label)."""
        get = self.ids.get
        return [get(label, -1) for label in labels]

    def name_of(self, dense_id: int) -> str | None:
        """Label of any integer (None outside ``0..n-1``): for ids a person typed, not checked ones."""
        return self.names[dense_id] if 0 <= dense_id < len(self.ids) else None

    def names_of(self, ids: Iterable[int]) -> list[str | None]:
        """Labels of dense ids in ``-1..n-1`` (None for ``-1``); ids are checked when the version loads."""
        names = self.names
        return [names[i] for i in ids]


@dataclass(frozen=True, eq=False)
class VersionLabels:
    """The labels one version serves: ``item`` (None when its item ids are integers) and ``attributes``
    per side view that has labels (a view missing here has integer ids)."""

    item: ViewLabels | None
    attributes: Mapping[str, ViewLabels]

    def of(self, view: str) -> ViewLabels | None:
        return self.attributes.get(view)

    def check(self, version: str, items: npt.NDArray[np.int64], attributes: Mapping[str, Any]) -> None:
        """Raise ``InvalidIndexVersion`` unless every item id has a label and every attribute id of a
        labelled view is a label or ``-1``: the lookups above then never fail on a request."""
        if (
            self.item is not None
            and len(items)
            and (int(items.min()) < 0 or int(items.max()) >= len(self.item))
        ):
            raise InvalidIndexVersion(
                f"{version}: items.npy holds ids outside the {len(self.item)} labels of the item view"
            )
        for view, labels in self.attributes.items():
            arr = attributes.get(view)
            if arr is not None and len(arr) and (int(arr.min()) < -1 or int(arr.max()) >= len(labels)):
                raise InvalidIndexVersion(
                    f"{version}: attributes/{view}.npy holds ids outside -1 and its {len(labels)} labels"
                )


def write_labels(
    layout: IndexVersionLayout, dataset: DatasetLayout | None, views: Iterable[str]
) -> list[str]:
    """Copy the dataset's labels of ``views`` (item view and side views) into the (temporary) version
    folder ``layout``; returns the views that had labels, sorted (the manifest's ``labels``)."""
    written: list[str] = []
    if dataset is None:
        return written
    for view in sorted(set(views)):
        found = read_id_labels(dataset.labels(view))
        if found is not None:
            write_id_labels(layout.labels(view), found)
            written.append(view)
    return written


def read_labels(
    layout: IndexVersionLayout, name: str, views: list[str], item_view: str, attribute_views: Iterable[str]
) -> VersionLabels | None:
    """The version's labels of ``views`` (files already checked against the manifest), split into the
    item view's and the side views'; None when there are none. Raises ``InvalidIndexVersion``."""
    if not views:
        return None
    loaded: dict[str, ViewLabels] = {}
    for view in views:
        try:
            found = read_id_labels(layout.labels(view))
        except (OSError, ValueError) as exc:
            raise InvalidIndexVersion(f"{name}: labels/{view}.parquet unreadable: {exc}") from exc
        if found is None:
            raise InvalidIndexVersion(f"{name}: labels/{view}.parquet listed in the manifest is missing")
        loaded[view] = ViewLabels.of(found)
    sides = {v: loaded[v] for v in attribute_views if v in loaded}
    return VersionLabels(item=loaded.get(item_view), attributes=sides)
