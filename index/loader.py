"""Open the version an index root currently serves."""

from __future__ import annotations

from pathlib import Path

from core.layout import IndexRoot
from index.errors import IndexNotReady, InvalidIndexVersion
from index.publish import current_version
from index.serving import ServingIndex


def load_current(index_root: Path, *, mmap: bool = True) -> ServingIndex:
    """The ``ServingIndex`` of the version named by ``<index_root>/CURRENT``.

    Raises ``IndexNotReady`` when there is no CURRENT or the version it names does not validate.
    """
    root = IndexRoot(Path(index_root))
    version = current_version(root.root)
    if version is None:
        raise IndexNotReady(f"no published index version: {root.current} is missing or empty")
    try:
        return ServingIndex.load(root.version(version).root, mmap=mmap)
    except InvalidIndexVersion as exc:
        raise IndexNotReady(f"CURRENT names version {version!r}, which cannot be served: {exc}") from exc
