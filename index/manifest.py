"""File inventory of an index version: sha256 and size of every file, written into the manifest by the
builder and checked when a version is loaded or published."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from core.atomic import sha256_file
from core.layout import COMPLETE_MARKER, MANIFEST
from core.manifests import FileEntry
from index.errors import InvalidIndexVersion

#: Files up to this size are hashed on every load ("cheap" checks); larger ones only on a full check.
CHEAP_HASH_BYTES = 64 << 20


def describe_files(root: Path) -> dict[str, FileEntry]:
    """``{relative posix path: {"sha256": hex, "bytes": size}}`` for every file under ``root`` except the
    manifest and the completion marker (which are written after it)."""
    out: dict[str, FileEntry] = {}
    for dirpath, _, files in os.walk(root):
        for name in files:
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            if rel in (MANIFEST, COMPLETE_MARKER):
                continue
            out[rel] = FileEntry(sha256=sha256_file(path), bytes=path.stat().st_size)
    return dict(sorted(out.items()))


def verify_files(
    root: Path, files: Mapping[str, FileEntry], required: list[str], *, full: bool, sizes_only: bool = False
) -> None:
    """Check that every ``required`` file is inventoried, and that each inventoried file exists with its
    recorded size and (files up to ``CHEAP_HASH_BYTES``, or all when ``full``; none when ``sizes_only``)
    its sha256.

    Raises ``InvalidIndexVersion`` naming the first bad file.
    """
    name = root.name
    for rel in required:
        if rel not in files:
            raise InvalidIndexVersion(f"{name}: manifest does not list the required file {rel}")
    for rel, info in files.items():
        path = root / rel
        if not path.is_file():
            raise InvalidIndexVersion(f"{name}: file {rel} listed in the manifest is missing")
        size = path.stat().st_size
        if size != info.bytes:
            raise InvalidIndexVersion(
                f"{name}: {rel} has {size} bytes, the manifest says {info.bytes} (truncated or replaced?)"
            )
        if sizes_only:
            continue
        if (full or size <= CHEAP_HASH_BYTES) and sha256_file(path) != info.sha256:
            raise InvalidIndexVersion(f"{name}: {rel} does not match its sha256 checksum in the manifest")
