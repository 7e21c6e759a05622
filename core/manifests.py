"""Typed manifests: one model per artifact folder kind, read and written here and nowhere else.

``DatasetManifest`` is what ``m2grl prepare`` writes into a dataset folder; training, the baselines, the
evaluation and tuning read its views, target and prepare config through it.

``ModelManifest`` is what ``m2grl train`` writes into a model folder (``model.artifact`` reads and writes
it); the index build, the co-occurrence channel, the explorer and the evaluation read its views, config
and dataset through it. ``MetricManifest`` is the diversity metric model's (``m2grl train-metric``).

``IndexManifest`` is the manifest of an index version (``IndexVersionLayout.manifest``): ``index.build``
writes it, and the service (``index.serving``, ``index.explorer``, ``index.publish``, ``app.reload``) reads
its fields by name instead of looking keys up in a dict.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from core.atomic import atomic_write_json, read_json
from core.layout import DatasetLayout, MetricLayout, ModelLayout

#: The format tag of an index manifest (a reader refuses any other).
INDEX_FORMAT = "m2grl-index/1"
#: The format version a model folder's manifest carries (``format_version``).
MODEL_FORMAT_VERSION = 1

_M = TypeVar("_M", bound=BaseModel)


def _validated(cls: type[_M], data: Any, path: Path) -> _M:
    """``cls`` validated from ``data``; ``ValueError`` in one line naming the file and the bad field."""
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        if not err["loc"]:  # a check across fields: its message names them
            raise ValueError(f"{path}: {err['msg'].removeprefix('Value error, ')}") from None
        where = ".".join(str(p) for p in err["loc"])
        raise ValueError(f"{path}: field {where!r} {err['msg'].lower()}, got {err.get('input')!r}") from None


def _read_folder_manifest(cls: type[_M], path: Path, what: str) -> _M:
    """The manifest at ``path`` of a folder of kind ``what``: ``FileNotFoundError`` when the folder has
    none (it is not a finished artifact), ``ValueError`` (one line) when it is unreadable or malformed."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: is {path.parent} {what}?")
    try:
        data = read_json(path)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: manifest is not valid JSON: {exc}") from None
    return _validated(cls, data, path)


class _Manifest(BaseModel):
    """What every manifest does: write itself atomically, every field (a reader's extras included)."""

    def write(self, path: Path) -> None:
        atomic_write_json(path, self.model_dump(mode="json"))


class FileEntry(BaseModel):
    """Size and checksum of one file of a version (``index.manifest.describe_files``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    sha256: str
    bytes: int = Field(ge=0)


class IndexManifest(_Manifest):
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
        return _validated(cls, data, path)

    def built_at_s(self) -> float | None:
        """Unix time of ``built_at`` (None when absent or not ISO-8601)."""
        if self.built_at is None:
            return None
        try:
            return datetime.fromisoformat(self.built_at).timestamp()
        except ValueError:
            return None


class DatasetManifest(_Manifest):
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
        return _read_folder_manifest(
            cls, DatasetLayout(Path(dataset_dir)).manifest, "a prepared dataset folder"
        )

    @property
    def item_view(self) -> str:
        return self.views[0]


class ModelManifest(_Manifest):
    """The fields of a model manifest that other stages read (views, relations, the training config, the
    dataset and its checksum); the rest (counts, losses, timings, versions) is kept as written."""

    model_config = ConfigDict(frozen=True, extra="allow")

    kind: Literal["m2grl"] = "m2grl"
    format_version: int = MODEL_FORMAT_VERSION
    views: list[str] = Field(default_factory=lambda: ["item"], min_length=1)
    relations: list[tuple[str, str]] = Field(default_factory=list)
    config: dict[str, Any] = Field(default_factory=dict)
    #: the dataset folder it was trained on, and the checksum of what training read of it
    dataset: str | None = None
    dataset_sha256: str | None = None
    #: a name given by whoever made the folder (the index records it as the model's version)
    version: str | None = None

    @classmethod
    def read(cls, model_dir: Path) -> ModelManifest:
        """The manifest of ``model_dir`` (``FileNotFoundError`` / one-line ``ValueError``)."""
        return _read_folder_manifest(cls, ModelLayout(Path(model_dir)).manifest, "an M2GRL model folder")

    @property
    def item_view(self) -> str:
        return self.views[0]

    @model_validator(mode="after")
    def _served_exponent(self) -> ModelManifest:
        value = self.config.get("norm_exponent", 0.0)
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
            raise ValueError(f"config.norm_exponent must be in [0, 1], got {value!r}")
        return self

    @property
    def norm_exponent(self) -> float:
        """The exponent ``a`` of the served vectors ``e / |e|^a`` (``config.norm_exponent``); models
        written before the option existed are served raw (0)."""
        return float(self.config.get("norm_exponent", 0.0))

    @property
    def dataset_dir(self) -> Path | None:
        """The training dataset's folder as recorded (None when the manifest names none)."""
        return Path(self.dataset) if self.dataset else None


class MetricManifest(_Manifest):
    """The fields of a diversity metric folder's manifest that other stages read; the rest (counts,
    dimensions, eigenvalues, history, timings) is kept as written."""

    model_config = ConfigDict(frozen=True, extra="allow")

    kind: Literal["metric"] = "metric"
    config: dict[str, Any] = Field(default_factory=dict)
    source_model: str | None = None
    source_dataset: str | None = None
    inputs_sha256: dict[str, str] = Field(default_factory=dict)

    @classmethod
    def read(cls, metric_dir: Path) -> MetricManifest:
        """The manifest of ``metric_dir`` (``FileNotFoundError`` / one-line ``ValueError``)."""
        return _read_folder_manifest(
            cls, MetricLayout(Path(metric_dir)).manifest, "a diversity metric folder"
        )
