"""Config files: TOML holding some fields of a frozen config dataclass, read over a base config.

``m2grl tune`` writes them (:func:`toml_text`), ``m2grl train --config`` and ``prepare --config`` read them
(:func:`read_toml_overrides`), so a file only needs the fields that differ from the defaults.
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def read_toml_overrides(path: Path, base: Any) -> Any:
    """``base`` (a frozen config dataclass: ``M2GRLConfig``, ``PrepareConfig``) with the fields a TOML file
    sets; unknown keys and bad values raise ``ValueError`` naming the file and the field."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: config file not found") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not valid TOML: {exc}") from None
    kind = type(base)
    known = {f.name for f in dataclasses.fields(kind)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{path}: unknown {kind.__name__} fields {unknown}; valid: {sorted(known)}")
    values = {k: _tuples(v) for k, v in data.items()}
    try:
        return dataclasses.replace(base, **values)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: {exc}") from None


def _tuples(value: Any) -> Any:
    """TOML arrays (lists) as the tuples the frozen configs hold."""
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


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
