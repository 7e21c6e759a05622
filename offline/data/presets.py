"""Named ``PrepareConfig`` presets for the bundled datasets (a registry: unknown names list the valid ones)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from offline.data.config import PrepareConfig

PresetName = Literal["movielens", "taobao", "generic"]

YEAR_S = 365 * 86_400
#: Generic and Taobao logs: a user's visits less than a week apart form one sequence, so the item graph
#: links items across a user's sessions (what Item-CF's whole-history co-occurrence sees).
WEEK_S = 7 * 86_400
#: Official UserBehavior window, 2017-11-25 00:00 to 2017-12-04 00:00 China time (UTC+8), half-open.
TAOBAO_WINDOW = (1_511_539_200, 1_512_316_800)


def _movielens() -> PrepareConfig:
    # Appendix A.1: sessions split at one year of idleness and capped at 50 events; a per-user temporal
    # hold-out because MovieLens users are spread over 22 years (a global cut would leave most without test).
    return PrepareConfig(
        views=("item", "category"),
        behaviors=("rating",),
        session_gap_s=YEAR_S,
        session_merge_gap_s=0,
        max_session_len=50,
        split="per_user",
        test_fraction=0.2,
    )


def _taobao() -> PrepareConfig:
    # Section 5.1.1: the last day is test. The public sample has no shop column, so two views.
    # No walks by default: `--walks-per-node 5` raises validation HitRate@50 but makes training far
    # slower (reports/tuning.md, section "Taobao walks").
    return PrepareConfig(
        views=("item", "category"),
        behaviors=("view", "cart", "fav", "buy"),
        time_window=TAOBAO_WINDOW,
        session_gap_s=WEEK_S,
        split="global_time",
        test_days=1.0,
    )


def _generic() -> PrepareConfig:
    return PrepareConfig(session_gap_s=WEEK_S)


PRESETS: dict[str, Callable[[], PrepareConfig]] = {
    "movielens": _movielens,
    "taobao": _taobao,
    "generic": _generic,
}


def preset(name: PresetName) -> PrepareConfig:
    """The ``PrepareConfig`` of a named dataset; raises ``ValueError`` listing the valid names."""
    try:
        return PRESETS[name]()
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; valid: {', '.join(sorted(PRESETS))}") from None
