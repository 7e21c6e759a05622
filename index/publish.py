"""Publishing index versions under an index root (``core.layout.IndexRoot``).

``CURRENT`` is a one-line file naming the served version. It is replaced atomically (a temporary file
then ``os.replace``) and only after the target version validated, so a reader sees either the old or the
new name, never a version that fails to load. Old complete versions are kept for rollback, up to a
retention count.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import uuid
from collections.abc import Collection
from pathlib import Path

from core.atomic import atomic_write_bytes
from core.layout import IndexRoot
from core.manifests import IndexManifest
from index.errors import InvalidIndexVersion
from index.serving import ServingIndex

log = logging.getLogger(__name__)

VERSION_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def check_version_name(version: str) -> str:
    """``version`` must be a plain folder name (letters, digits, ``._-``, not starting with a dot)."""
    if not isinstance(version, str) or not VERSION_NAME.match(version):
        raise ValueError(f"version: {version!r} is not a valid version name (letters, digits, '._-')")
    return version


def _sort_key(root: IndexRoot, name: str) -> tuple[str, str]:
    """Versions sort by build time from their manifest, then name (default names are UTC timestamps)."""
    try:
        built = IndexManifest.read(root.version(name).manifest).built_at or ""
    except ValueError:
        built = ""
    return (built, name)


def list_versions(index_root: Path) -> list[str]:
    """Complete versions (completion marker present), oldest first. Temporary and unfinished folders are
    not versions."""
    root = IndexRoot(Path(index_root))
    if not root.versions.is_dir():
        return []
    names = [
        p.name
        for p in root.versions.iterdir()
        if p.is_dir() and VERSION_NAME.match(p.name) and root.version(p.name).complete_marker.is_file()
    ]
    return sorted(names, key=lambda name: _sort_key(root, name))


def current_version(index_root: Path) -> str | None:
    """The version named by ``CURRENT``, or None when there is none."""
    path = IndexRoot(Path(index_root)).current
    try:
        name = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    return name or None


def publish(index_root: Path, version: str) -> None:
    """Validate ``version`` (``ServingIndex.load``) and only then point ``CURRENT`` at it (``os.replace``).

    Raises ``InvalidIndexVersion`` (CURRENT untouched) when the version is missing or broken.
    """
    root = IndexRoot(Path(index_root))
    check_version_name(version)
    ServingIndex.load(root.version(version).root, mmap=True).close()
    atomic_write_bytes(root.current, f"{version}\n".encode())
    log.info("CURRENT -> %s", version)


def rollback(index_root: Path, to: str | None = None) -> str:
    """Point ``CURRENT`` at ``to``, or by default at the newest complete version older than the current
    one. Returns the version now served. Raises ``ValueError`` when there is nothing to roll back to,
    ``InvalidIndexVersion`` when the target does not validate (CURRENT untouched)."""
    versions = list_versions(index_root)
    if to is None:
        current = current_version(index_root)
        if current is None:
            raise ValueError("rollback: no CURRENT version; name the target with to=")
        if current not in versions:
            raise ValueError(
                f"rollback: CURRENT names {current!r}, which is not a complete version; name the target"
            )
        earlier = versions[: versions.index(current)]
        if not earlier:
            raise ValueError(f"rollback: no complete version older than {current!r}; versions: {versions}")
        to = earlier[-1]
    elif to not in versions:
        raise InvalidIndexVersion(f"rollback: {to!r} is not a complete version; versions: {versions}")
    publish(index_root, to)
    return to


def remove_version(index_root: Path, version: str) -> None:
    """Delete a version: first renamed to a hidden name (so a half-deleted folder is never listed nor
    loaded), then removed. Refuses to delete the version named by CURRENT."""
    root = IndexRoot(Path(index_root))
    check_version_name(version)
    if version == current_version(index_root):
        raise ValueError(f"version {version!r} is CURRENT and cannot be removed")
    path = root.version(version).root
    hidden = root.versions / f".deleting-{version}-{uuid.uuid4().hex[:8]}"
    os.rename(path, hidden)
    shutil.rmtree(hidden, ignore_errors=True)


#: optional file beside CURRENT naming versions that ``prune`` must keep, one per line (``#`` comments)
PIN_FILE = "PINNED"


def pinned_versions(index_root: Path) -> set[str]:
    """The versions named by ``<index_root>/PINNED`` (none when the file is absent); raises
    ``ValueError`` naming the line of a name that is not a version name."""
    path = Path(index_root) / PIN_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return set()
    out = set()
    for number, line in enumerate(text.splitlines(), start=1):
        name = line.split("#", 1)[0].strip()
        if not name:
            continue
        try:
            out.add(check_version_name(name))
        except ValueError as exc:
            raise ValueError(f"{path}:{number}: {exc}") from None
    return out


def prune(index_root: Path, keep: int, pinned: Collection[str] = ()) -> list[str]:
    """Keep the ``keep`` newest complete versions, CURRENT, the ``pinned`` versions (A/B variants'
    ``index_version``) and those named by ``<index_root>/PINNED``; delete the other complete versions.

    Unfinished folders are left alone (a build may still be writing them). Returns the removed names.
    """
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
        raise ValueError(f"keep: must be a positive int, got {keep!r}")
    versions = list_versions(index_root)
    current = current_version(index_root)
    kept_pins = set(pinned) | pinned_versions(index_root)
    keep_set = set(versions[-keep:]) | ({current} if current else set()) | kept_pins
    removed = [v for v in versions if v not in keep_set]
    for v in removed:
        remove_version(index_root, v)
        log.info("pruned index version %s", v)
    return removed


def version_status(index_root: Path) -> list[str]:
    """One line per complete version, oldest first, as ``m2grl index list`` prints it: ``*`` marks the
    version CURRENT names, ``(pinned)`` those of the PINNED file, ``(refused: reason)`` a version that
    does not validate (``ServingIndex.load``'s checks), and a CURRENT that names no complete version is
    listed last as ``* NAME (refused: ...)``."""
    root = IndexRoot(Path(index_root))
    current = current_version(root.root)
    try:
        pins = pinned_versions(root.root)
    except ValueError:
        pins = set()
    versions = list_versions(root.root)
    lines = []
    for name in versions:
        notes = ["pinned"] if name in pins else []
        try:
            ServingIndex.load(root.version(name).root, mmap=True).close()
        except InvalidIndexVersion as exc:
            notes.append(f"refused: {exc}")
        lines.append(
            ("* " if name == current else "  ") + name + (f"  ({'; '.join(notes)})" if notes else "")
        )
    if current is not None and current not in versions:
        lines.append(f"* {current}  (refused: CURRENT names no complete version)")
    return lines
