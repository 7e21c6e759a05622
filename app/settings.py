"""Service settings: one typed object read once at start-up (environment ``M2GRL_*`` and an optional
YAML/JSON file named by ``M2GRL_CONFIG_FILE``), failing fast with the name of the bad field.

Precedence, highest first: constructor arguments, environment variables, the config file, defaults.
Nested fields come from the environment as JSON (``M2GRL_EXPERIMENT='{"salt": "s", "variants": [...]}'``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    JsonConfigSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from index.channels import check_mix
from index.publish import check_version_name

CONFIG_FILE_ENV = "M2GRL_CONFIG_FILE"
FIFTEEN_DAYS_S = 15 * 24 * 3600.0


class VariantConfig(BaseModel):
    """One arm of the A/B experiment."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$", description="Variant name.")
    weight: float = Field(ge=0.0, description="Relative share of traffic (weights are normalised).")
    index_version: str | None = Field(
        default=None, description="Pinned index version under <index_root>/versions/, None = CURRENT."
    )
    strategy: Literal["metric", "filter"] = Field(
        default="metric",
        description="How mode=diversity is served: 'metric' = the metric model's diversity index "
        "(section 6.1), 'filter' = the general index with category filters.",
    )

    channels: dict[str, float] | None = Field(
        default=None,
        description="General-mode channel mix, e.g. {m2grl: 0.5, cooc: 0.5}, merged by weighted "
        "reciprocal-rank fusion (index.channels); None = the index version's default mix.",
    )

    @field_validator("channels")
    @classmethod
    def _known_channels(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        return None if value is None else check_mix(value)

    @field_validator("index_version")
    @classmethod
    def _plain_version_name(cls, value: str | None) -> str | None:
        # a version is one folder under <index_root>/versions/: "../x" or "a/b" would leave the root
        return None if value is None else check_version_name(value)


class ExperimentConfig(BaseModel):
    """Variants and the salt of the stable user -> variant hash."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    salt: str = Field(default="m2grl-ab-1", description="Per-experiment salt; change it to reshuffle users.")
    variants: tuple[VariantConfig, ...] = Field(
        default=(VariantConfig(name="control", weight=1.0),), description="Declared variants."
    )

    @model_validator(mode="after")
    def _check_variants(self) -> ExperimentConfig:
        if not self.variants:
            raise ValueError("experiment.variants: declare at least one variant")
        names = [v.name for v in self.variants]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"experiment.variants: names must be unique, repeated: {dupes}")
        if sum(v.weight for v in self.variants) <= 0:
            raise ValueError("experiment.variants: weights must sum to a positive number")
        return self


class Settings(BaseSettings):
    """Everything the service reads from its environment; validated when constructed."""

    model_config = SettingsConfigDict(env_prefix="M2GRL_", extra="forbid", frozen=True)

    index_root: Path = Field(description="Index root (CURRENT + versions/<v>/) to serve and watch.")
    default_k: int = Field(default=50, ge=1, description="k when the query does not give one.")
    max_k: int = Field(default=500, ge=1, le=10_000, description="Largest k a caller may ask for.")
    user_header: str = Field(default="X-User-Id", min_length=1, description="Header naming the user.")
    variant_header: str = Field(default="X-Variant", min_length=1, description="Header forcing a variant.")
    recent_ttl_s: float = Field(
        default=FIFTEEN_DAYS_S, gt=0, description="How long a seen category stays excluded (15 days, 6.1)."
    )
    recent_store: Literal["memory", "redis"] = Field(default="memory", description="Recent-category store.")
    redis_url: str = Field(
        default="redis://127.0.0.1:6379/0", description="Redis URL for recent_store=redis."
    )
    redis_timeout_s: float = Field(
        default=0.05, gt=0, le=5, description="Per-call Redis budget; past it the request goes on without."
    )
    redis_retry_s: float = Field(
        default=1.0, ge=0, description="After a Redis failure, skip Redis for this long before trying again."
    )
    memory_store_max_users: int = Field(
        default=200_000,
        ge=1,
        description="Users kept by the memory store (least recently written dropped first); about "
        "1.2 KiB per user with recent_items_kept=20: 200,000 users ~ 240 MiB per worker.",
    )
    recent_items_kept: int = Field(default=20, ge=1, description="Recent items kept per user for /u2i.")
    u2i_triggers: int = Field(default=5, ge=1, le=100, description="How many recent items /u2i merges.")
    reload_poll_s: float = Field(default=5.0, gt=0, description="Seconds between checks of CURRENT.")
    admin_token: str | None = Field(default=None, description="Bearer token of /admin/*; None = routes off.")
    ingest_token: str | None = Field(
        default=None,
        description="Bearer token of the state-changing routes POST /events and POST /feedback; "
        "None = both off (403).",
    )
    feedback_secret: str | None = Field(
        default=None,
        min_length=16,
        description="MAC key of request ids, the same on every replica; None = a random one per worker.",
    )
    feedback_max_skew_s: float = Field(
        default=300.0, ge=0, description="Clock skew tolerated on feedback timestamps and request ids."
    )
    feedback_max_age_s: float = Field(
        default=86_400.0, gt=0, description="Oldest request id and feedback event accepted (seconds)."
    )
    max_batch: int = Field(default=256, ge=1, description="Most triggers in one POST /i2i:batch.")
    max_batch_candidates: int = Field(
        default=25_600,
        ge=1,
        description="Most candidates one POST /i2i:batch may ask for (triggers x k, 256 x 100 by default): "
        "bounds the work and the answer size of one request (larger: 422).",
    )
    batch_threads: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Threads per worker running batch lookups off the event loop (more batches wait).",
    )
    max_body_bytes: int = Field(default=1 << 20, ge=1024, description="Largest request body accepted.")
    max_header_bytes: int = Field(
        default=16 << 10,
        ge=1024,
        description="Largest request head (the names and values of all headers); larger: 431.",
    )
    body_timeout_s: float = Field(
        default=10.0, gt=0, description="Longest wait for the rest of a request body; past it: 408."
    )
    timeout_keep_alive_s: int = Field(
        default=5, ge=1, description="uvicorn: close an idle keep-alive connection after this many seconds."
    )
    limit_concurrency: int | None = Field(
        default=1000,
        ge=1,
        description="uvicorn: most connections and tasks at once per worker before answering 503 (None = no limit).",
    )
    backlog: int = Field(default=2048, ge=1, description="uvicorn: pending connections queued by the kernel.")
    events_max_skew_s: float = Field(
        default=300.0,
        ge=0,
        description="POST /events: most seconds an event timestamp may lie in the future (clock skew).",
    )
    index_private_max_bytes: int = Field(
        default=64 << 20,
        ge=0,
        description="Index versions whose arrays total at most this many bytes are read into private "
        "memory (immune to changes of the files on disk); larger ones are memory-mapped.",
    )
    index_verify_s: float = Field(
        default=300.0,
        gt=0,
        description="Seconds between re-checks of the served versions' files (sizes and checksums).",
    )
    category_view: str = Field(default="category", min_length=1, description="Attribute view of categories.")
    docs_pages: bool = Field(
        default=True,
        description="Serve the pages made for people: /docs and /redoc (the API reference) and /explore (the "
        "explorer page and the JSON it reads); off: 404, for a replica that serves clients only.",
    )
    experiment: ExperimentConfig = Field(default_factory=ExperimentConfig, description="A/B experiment.")

    @field_validator("admin_token")
    @classmethod
    def _token_not_blank(cls, value: str | None) -> str | None:
        # a blank token would let "Authorization: Bearer " in: refuse it rather than guess "off"
        if value is not None and not value.strip():
            raise ValueError("must not be blank (leave it unset to turn the admin routes off)")
        return value

    @field_validator("ingest_token")
    @classmethod
    def _ingest_token_not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must not be blank (leave it unset to turn events and feedback off)")
        return value

    @field_validator("user_header", "variant_header")
    @classmethod
    def _header_name(cls, value: str) -> str:
        if not all(c.isalnum() or c in "-_" for c in value):
            raise ValueError(f"not a valid HTTP header name: {value!r}")
        return value

    @model_validator(mode="after")
    def _cross_checks(self) -> Settings:
        if self.default_k > self.max_k:
            raise ValueError(f"default_k ({self.default_k}) must be <= max_k ({self.max_k})")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = os.environ.get(CONFIG_FILE_ENV)
        if config_file:
            path = Path(config_file)
            if not path.is_file():
                raise ValueError(f"{CONFIG_FILE_ENV}: no such file {path}")
            if path.suffix.lower() in (".yaml", ".yml"):
                sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=path))
            elif path.suffix.lower() == ".json":
                sources.append(JsonConfigSettingsSource(settings_cls, json_file=path))
            else:
                raise ValueError(f"{CONFIG_FILE_ENV}: {path} must end in .yaml, .yml or .json")
        return tuple(sources)

    def variant(self, name: str) -> VariantConfig | None:
        """The declared variant called ``name``, or None."""
        for v in self.experiment.variants:
            if v.name == name:
                return v
        return None

    @property
    def variant_names(self) -> list[str]:
        return [v.name for v in self.experiment.variants]

    @property
    def required_channels(self) -> dict[str | None, frozenset[str]]:
        """Channels each served version must hold (None = CURRENT): those the variants on it name.
        Variants without a mix take the version's own default, which the version always holds."""
        out: dict[str | None, set[str]] = {}
        for v in self.experiment.variants:
            out.setdefault(v.index_version, set()).update(v.channels or ())
        return {version: frozenset(names) for version, names in out.items()}

    @property
    def pinned_versions(self) -> tuple[str, ...]:
        """Index versions pinned by some variant (loaded beside CURRENT)."""
        return tuple(sorted({v.index_version for v in self.experiment.variants if v.index_version}))


def pinned_in_config_file(path: Path) -> tuple[str, ...]:
    """Index versions pinned by the A/B variants of a service settings file (YAML or JSON, the file of
    ``M2GRL_CONFIG_FILE``): what ``build-index --serving-config`` must not prune. Raises ``ValueError``
    naming the file on an unreadable file or an invalid ``experiment``."""
    try:
        text = Path(path).read_text(encoding="utf-8")
        data = json.loads(text) if Path(path).suffix.lower() == ".json" else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise ValueError(f"{path}: unreadable settings file: {exc}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a settings file must hold a mapping, got {type(data).__name__}")
    try:
        experiment = ExperimentConfig.model_validate(data.get("experiment", {}))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise ValueError(f"{path}: experiment.{where}: {first.get('msg', 'invalid')}") from None
    return tuple(sorted({v.index_version for v in experiment.variants if v.index_version}))
