"""Reuse of trained folders across evaluation runs: a model or metric folder whose manifest records
the same config and the same input checksums is what training would write again, so a second run on
the same data (another protocol, a re-render) reads it instead of retraining."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from core.atomic import read_json


def trained_on(manifest: Path, config: dict[str, Any], key: str, checksum: object) -> bool:
    """Whether the folder of ``manifest`` was trained with ``config`` on inputs whose checksum (the
    manifest's ``key``) is ``checksum``."""
    if not manifest.is_file():
        return False
    written = read_json(manifest)
    # through JSON, as the manifest was written: tuples become lists
    return bool(written.get("config") == json.loads(json.dumps(config)) and written.get(key) == checksum)
