"""``ProtocolConfig``: the options of the evaluation protocol (a ``core.config`` model), apart from the
protocol's code so that the CLI reads its help without loading the harness."""

from __future__ import annotations

from pydantic import Field, field_validator

from core.config import FrozenConfig, PositiveInt


class ProtocolConfig(FrozenConfig):
    """Options of the protocol (``offline.evaluation.protocol``)."""

    ks: tuple[PositiveInt, ...] = Field(
        (20, 50, 100), min_length=1, strict=False, description="Cut-offs K of every metric."
    )
    n_triggers: int = Field(
        1,
        ge=1,
        description="Triggers per test user: the last N distinct train items, candidates merged by best score.",
    )
    exclude_seen: bool = Field(
        False,
        description="Drop the items a user interacted with in train from both the candidates and the ground truth.",
    )
    recent_days: float = Field(
        15.0,
        ge=0,
        description="Discovery window: a category the user touched this many days before the split is not new.",
    )
    block_size: int = Field(4096, ge=1, description="Users scored per block.")
    freq_buckets: tuple[tuple[PositiveInt, PositiveInt | None], ...] = Field(
        ((1, 2), (3, 10), (11, None)), strict=False, description="Train-count ranges of the long-tail table."
    )

    @field_validator("freq_buckets", mode="after")
    @classmethod
    def _ranges(cls, value: tuple[tuple[int, int | None], ...]) -> tuple[tuple[int, int | None], ...]:
        for lo, hi in value:
            if hi is not None and hi < lo:
                raise ValueError(f"({lo}, {hi}) is not a range of train counts >= 1")
        return value

    @property
    def max_k(self) -> int:
        return max(self.ks)
