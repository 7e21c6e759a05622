"""Config files: TOML holding some fields of a config model (``core.config``), read over a base config.

``m2grl tune`` writes them (:func:`toml_text`), ``m2grl train --config`` and ``prepare --config`` read them
(:func:`read_toml_overrides`), so a file only needs the fields that differ from the defaults; a nested
config is a TOML table (``[trainer]``).
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from core.config import ConfigError, FrozenConfig

C = TypeVar("C", bound=FrozenConfig)


def read_toml_overrides(path: Path, base: C) -> C:
    """``base`` with the fields a TOML file sets; unknown keys and bad values raise ``ValueError`` naming
    the file and the field."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: config file not found") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not valid TOML: {exc}") from None
    try:
        return base.replace(**data)
    except ConfigError as exc:
        raise ValueError(f"{path}: {exc}") from None


def toml_text(values: Mapping[str, Any], comment: str = "") -> str:
    """Flat TOML of scalar values (bool, int, float, str), keys sorted; ``comment`` heads the file."""
    lines = [f"# {line}" for line in comment.splitlines()]
    for key in sorted(values):
        value = values[key]
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, int | float):
            text = repr(value)
        elif isinstance(value, str):
            text = '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
        else:
            raise TypeError(f"{key}: only scalars are written, got {type(value).__name__}")
        lines.append(f"{key} = {text}")
    return "\n".join(lines) + "\n"
