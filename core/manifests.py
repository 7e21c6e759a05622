"""Typed manifests: one model per artifact folder kind, read and written here and nowhere else.

``DatasetManifest`` is what ``m2grl prepare`` writes into a dataset folder; training, the baselines, the
evaluation and tuning read its views, target and prepare config through it.

``IndexManifest`` is the manifest of an index version (``IndexVersionLayout.manifest``): ``index.build``
writes it, and the service (``index.serving``, ``index.explorer``, ``index.publish``, ``app.reload``) reads
its fields by name instead of looking keys up in a dict.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core.atomic import atomic_write_json, read_json
from core.layout import DatasetLayout

#: The format tag of an index manifest (a reader refuses any other).
INDEX_FORMAT = "m2grl-index/1"


class FileEntry(BaseModel):
    """Size and checksum of one file of a version (``index.manifest.describe_files``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    sha256: str
    bytes: int = Field(ge=0)


class IndexManifest(BaseModel):
    """What an index version holds. Mode, channel, fused, explorer and cold entries keep the shapes their
    writers give them (``index.build``); unknown keys are ignored, so a newer writer's versions still load."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    format: Literal["m2grl-index/1"]
    version: str
    num_items: int = Field(ge=0)
    attribute_views: list[str]
    modes: dict[str, dict[str, Any]] = Field(min_length=1)
    #: built in memory (evaluation), not from a folder: nothing on disk to re-verify
    in_memory: bool = False
    built_at: str | None = None
    build_seconds: float | None = None
    item_view: str = "item"
    channels: dict[str, dict[str, Any]] = Field(default_factory=dict)
    default_mix: dict[str, float] | None = None
    fused: dict[str, Any] | None = None
    explorer: dict[str, Any] | None = None
    labels: list[str] = Field(default_factory=list)
    cold: dict[str, Any] | None = None
    sources: dict[str, Any] = Field(default_factory=dict)
    model_version: str = "unknown"
    config: dict[str, Any] = Field(default_factory=dict)
    faiss_version: str | None = None
    files: dict[str, FileEntry] = Field(default_factory=dict)

    @classmethod
    def read(cls, path: Path) -> IndexManifest:
        """The manifest at ``path``; ``ValueError`` (one line) when it is unreadable or malformed."""
        try:
            data = read_json(path)
        except (OSError, ValueError) as exc:
            raise ValueError(f"manifest unreadable: {exc}") from None
        if not isinstance(data, dict) or data.get("format") != INDEX_FORMAT:
            raise ValueError(f"manifest is not an index manifest of format {INDEX_FORMAT!r}")
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"])
            raise ValueError(f"manifest field {where!r} missing or malformed: {err['msg']}") from None

    def write(self, path: Path) -> None:
        """Write atomically (``core.atomic``)."""
        atomic_write_json(path, self.model_dump(mode="json"))

    def built_at_s(self) -> float | None:
        """Unix time of ``built_at`` (None when absent or not ISO-8601)."""
        if self.built_at is None:
            return None
        try:
            return datetime.fromisoformat(self.built_at).timestamp()
        except ValueError:
            return None


class DatasetManifest(BaseModel):
    """The fields of a dataset manifest that other stages read; the rest (counts, drops, timings, versions)
    is kept as written (``extra="allow"``) for people, not code."""

    model_config = ConfigDict(frozen=True, extra="allow")

    views: list[str] = Field(min_length=1)
    relations: list[tuple[str, str]] = Field(default_factory=list)
    target: Literal["test", "valid"] = "test"
    name: str | None = None
    config: dict[str, Any] = Field(default_factory=dict)
    split: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def read(cls, dataset_dir: Path) -> DatasetManifest:
        """The manifest of ``dataset_dir``: ``FileNotFoundError`` when the folder has none,
        ``ValueError`` (one line naming the field) when it is malformed."""
        path = DatasetLayout(Path(dataset_dir)).manifest
        if not path.exists():
            raise FileNotFoundError(f"{path} not found: is {dataset_dir} a prepared dataset folder?")
        data = read_json(path)
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"])
            raise ValueError(
                f"{path}: field {where!r} {err['msg'].lower()}, got {err.get('input')!r}"
            ) from None

    def write(self, path: Path) -> None:
        """Write atomically (``core.atomic``), every field, the extra ones included."""
        atomic_write_json(path, self.model_dump(mode="json"))

    @property
    def item_view(self) -> str:
        return self.views[0]
