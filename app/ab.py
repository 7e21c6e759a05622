"""A/B assignment: a stable hash of (salt, user id) picks a variant in proportion to its weight.

Pure functions: the same salt and user always land in the same variant, in every worker and replica,
with no shared state. A forcing header may pick any *declared* variant (for testing).
"""

from __future__ import annotations

import bisect
import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass

from app.settings import VariantConfig

_TWO_64 = float(1 << 64)


class UnknownVariant(ValueError):
    """The forcing header named a variant that is not declared."""

    def __init__(self, name: str, allowed: list[str]) -> None:
        super().__init__(name)
        self.name = name
        self.allowed = allowed

    def __str__(self) -> str:
        return f"variant {shown(self.name)} is not declared; allowed: {self.allowed}"


#: longest header value quoted back in full in an error message
SHOWN_CHARS = 64


def shown(value: str) -> str:
    """``value`` quoted for an error message, cut to ``SHOWN_CHARS`` characters with its length when
    longer (a 60,000-character header must not come back whole)."""
    if len(value) <= SHOWN_CHARS:
        return repr(value)
    return f"{value[:SHOWN_CHARS]!r}... ({len(value)} characters)"


def user_unit(salt: str, user_id: str) -> float:
    """Map (salt, user) to a uniform number in [0, 1) with blake2b (stable across processes)."""
    digest = hashlib.blake2b(f"{salt}\x00{user_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / _TWO_64


@dataclass(frozen=True)
class Assigner:
    """Weighted variant picker over the declared variants (weights normalised to cumulative bounds)."""

    salt: str
    variants: tuple[VariantConfig, ...]
    bounds: tuple[float, ...]
    by_name: dict[str, VariantConfig]

    @classmethod
    def from_variants(cls, salt: str, variants: Sequence[VariantConfig]) -> Assigner:
        """Build from declared variants; zero-weight variants are reachable only by forcing."""
        total = sum(v.weight for v in variants)
        if total <= 0:
            raise ValueError("variants: weights must sum to a positive number")
        bounds, acc = [], 0.0
        for v in variants:
            acc += v.weight / total
            bounds.append(acc)
        bounds[-1] = 1.0  # float rounding must not leave a gap at the top
        return cls(salt, tuple(variants), tuple(bounds), {v.name: v for v in variants})

    def pick(self, unit: float) -> VariantConfig:
        """The variant whose cumulative-weight interval contains ``unit`` in [0, 1)."""
        return self.variants[bisect.bisect_right(self.bounds, unit)]

    def assign(self, user_id: str | None, forced: str | None = None) -> VariantConfig:
        """Variant of a request.

        ``forced`` (the forcing header) wins when it names a declared variant, else raises
        ``UnknownVariant``. Without a user id the draw is random: there is no identity to keep sticky.
        """
        if forced is not None:
            variant = self.by_name.get(forced)
            if variant is None:
                raise UnknownVariant(forced, list(self.by_name))
            return variant
        if len(self.variants) == 1:
            return self.variants[0]
        unit = random.random() if not user_id else user_unit(self.salt, user_id)
        return self.pick(unit)
