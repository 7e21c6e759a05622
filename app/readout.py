"""The A/B readout: per-variant impressions, clicks and CTR from Prometheus, each variant against control.

Statistics (pure functions, numbers in, numbers out):

- CTR = clicks / impressions of an arm.
- Difference from control ``d = ctr_arm - ctr_control`` with the two-proportion **Wald** interval
  ``d +- z * sqrt(p_c (1 - p_c) / n_c + p_a (1 - p_a) / n_a)``, ``z = 1.96`` at 95 %. Wald is
  accurate when each arm has tens of clicks and non-clicks; below that the readout says the sample is
  too small anyway.
- Impressions needed per arm to detect the observed difference with a two-sided test at ``alpha`` and
  ``power`` (Fleiss, no continuity correction):
  ``n = (z_{1-alpha/2} sqrt(2 p (1 - p)) + z_{power} sqrt(p_c (1 - p_c) + p_a (1 - p_a)))^2 / d^2``
  with ``p = (p_c + p_a) / 2``. Stopping as soon as an interval excludes 0 overstates effects, so a
  variant is called better or worse only when both arms also have that many impressions.

Caveat: impressions are treated as independent trials. Impressions of one user are correlated, so with
few heavy users the true interval is wider than the Wald one.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

import httpx

IMPRESSIONS = "m2grl_feedback_impressions_total"
CLICKS = "m2grl_feedback_clicks_total"
#: a Prometheus range duration (``30d``, ``1h30m``), or ``total`` for the counters' current values
WINDOW_RE = re.compile(r"^(\d+(ms|s|m|h|d|w|y))+$")
TOTAL = "total"


class ReadoutError(Exception):
    """Why no readout could be made, in one line (Prometheus unreachable, no data, no control)."""


@dataclass(frozen=True)
class ArmCounts:
    """Feedback counted for one variant."""

    variant: str
    impressions: int
    clicks: int


@dataclass(frozen=True)
class ArmReadout:
    """One row of the readout; the difference fields are None for control and for an arm with no data."""

    variant: str
    impressions: int
    clicks: int
    ctr: float | None
    diff: float | None
    low: float | None
    high: float | None
    required: int | None
    enough: bool
    verdict: str


@dataclass(frozen=True)
class Readout:
    control: str
    confidence: float
    arms: tuple[ArmReadout, ...]

    @property
    def winner(self) -> str | None:
        """The variant decisively best: the best of those called ``better``; control when every other
        arm is called ``worse``; None while undecided."""
        better = [a for a in self.arms if a.verdict == "better"]
        if better:
            return max(better, key=lambda a: a.ctr or 0.0).variant
        others = [a for a in self.arms if a.variant != self.control]
        if others and all(a.verdict == "worse" for a in others):
            return self.control
        return None


def z_two_sided(confidence: float) -> float:
    """The normal quantile of a two-sided interval (1.959964 at 0.95)."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    return NormalDist().inv_cdf(0.5 + confidence / 2)


def ctr(clicks: float, impressions: float) -> float:
    """Clicks per impression; ``ValueError`` on no impressions or more clicks than impressions."""
    if impressions <= 0:
        raise ValueError("no impressions")
    if clicks < 0 or clicks > impressions:
        raise ValueError(f"{clicks} clicks for {impressions} impressions")
    return clicks / impressions


def diff_interval(
    control_clicks: float, control_n: float, arm_clicks: float, arm_n: float, confidence: float = 0.95
) -> tuple[float, float, float]:
    """``(d, low, high)``: CTR of the arm minus CTR of control and its two-proportion Wald interval."""
    pc, pa = ctr(control_clicks, control_n), ctr(arm_clicks, arm_n)
    se = math.sqrt(pc * (1 - pc) / control_n + pa * (1 - pa) / arm_n)
    d = pa - pc
    half = z_two_sided(confidence) * se
    return d, d - half, d + half


def required_per_arm(p_control: float, p_arm: float, alpha: float = 0.05, power: float = 0.8) -> int | None:
    """Impressions per arm for a two-sided ``alpha`` test to detect ``p_arm - p_control`` with
    ``power`` (Fleiss, no continuity correction; 435 for 5 % vs 10 %); None when they are equal."""
    if p_arm == p_control:
        return None
    pbar = (p_control + p_arm) / 2
    za = z_two_sided(1 - alpha)
    zb = NormalDist().inv_cdf(power)
    root = za * math.sqrt(2 * pbar * (1 - pbar)) + zb * math.sqrt(
        p_control * (1 - p_control) + p_arm * (1 - p_arm)
    )
    return math.ceil(root**2 / (p_arm - p_control) ** 2)


def make_readout(
    counts: Sequence[ArmCounts], control: str, confidence: float = 0.95, power: float = 0.8
) -> Readout:
    """Every arm against ``control`` (``ReadoutError`` when control is absent or has no impressions)."""
    by_name = {c.variant: c for c in counts}
    if control not in by_name:
        raise ReadoutError(
            f"control variant {control!r} has no feedback data; variants with data: {sorted(by_name)}"
        )
    base = by_name[control]
    if base.impressions <= 0:
        raise ReadoutError(f"control variant {control!r} has no impressions yet")
    for c in counts:
        if c.clicks > c.impressions:
            raise ReadoutError(f"variant {c.variant!r}: {c.clicks} clicks exceed {c.impressions} impressions")
    pc = ctr(base.clicks, base.impressions)
    rows = [ArmReadout(control, base.impressions, base.clicks, pc, None, None, None, None, False, "control")]
    for c in sorted(counts, key=lambda c: c.variant):
        if c.variant == control:
            continue
        if c.impressions <= 0:
            rows.append(ArmReadout(c.variant, 0, c.clicks, None, None, None, None, None, False, "no data"))
            continue
        d, low, high = diff_interval(base.clicks, base.impressions, c.clicks, c.impressions, confidence)
        required = required_per_arm(pc, c.clicks / c.impressions, 1 - confidence, power)
        enough = required is not None and min(base.impressions, c.impressions) >= required
        direction = "better" if low > 0 else "worse" if high < 0 else None
        verdict = "inconclusive" if direction is None else direction if enough else f"leaning {direction}"
        rows.append(
            ArmReadout(c.variant, c.impressions, c.clicks, c.clicks / c.impressions, d, low, high, required,
                       enough, verdict)
        )  # fmt: skip
    return Readout(control, confidence, tuple(rows))


def _pct(x: float | None, signed: bool = False) -> str:
    if x is None:
        return "-"
    return f"{x * 100:+.2f}" if signed else f"{x * 100:.2f}"


def format_readout(readout: Readout) -> str:
    """A plain-text table (CTR and differences in percent / percentage points) and a one-line call."""
    level = f"{readout.confidence * 100:g}%"
    header = ("variant", "impressions", "clicks", "CTR %", "diff pp", f"{level} CI pp", "needed/arm", "enough",
              "verdict")  # fmt: skip
    lines = [header]
    for a in readout.arms:
        ci = "-" if a.low is None else f"[{_pct(a.low, True)}, {_pct(a.high, True)}]"
        needed = "-" if a.variant == readout.control else "inf" if a.required is None else str(a.required)
        enough = "-" if a.variant == readout.control else "yes" if a.enough else "no"
        lines.append(
            (a.variant, str(a.impressions), str(a.clicks), _pct(a.ctr), _pct(a.diff, True), ci, needed, enough,
             a.verdict)
        )  # fmt: skip
    widths = [max(len(row[i]) for row in lines) for i in range(len(header))]
    text = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in lines]
    winner = readout.winner
    if winner is None:
        text.append(f"call: none yet (no variant differs from {readout.control} decisively)")
    else:
        text.append(f"call: {winner} has the best CTR")
    return "\n".join(text)


def counter_query(metric: str, window: str, mode: str | None = None) -> str:
    """PromQL summing ``metric`` per variant over ``window`` (``increase``: survives pod restarts) or,
    for ``total``, its current values (exact, but a restarted pod's counts are gone)."""
    if window != TOTAL and not WINDOW_RE.match(window):
        raise ReadoutError(f"--window: {window!r} is not a Prometheus duration (30d, 12h...) nor 'total'")
    if mode is not None and not mode.isalnum():
        raise ReadoutError(f"--mode: {mode!r} is not a mode name")
    selector = f'{metric}{{mode="{mode}"}}' if mode else metric
    if window == TOTAL:
        return f"sum by (variant) ({selector})"
    return f"sum by (variant) (increase({selector}[{window}]))"


def _query(client: httpx.Client, base: str, expr: str) -> dict[str, float]:
    try:
        response = client.get(f"{base.rstrip('/')}/api/v1/query", params={"query": expr})
    except httpx.HTTPError as exc:
        raise ReadoutError(f"Prometheus at {base} is unreachable: {exc}") from None
    try:
        answer = response.json()
    except ValueError:
        raise ReadoutError(f"Prometheus at {base} answered HTTP {response.status_code}, not JSON") from None
    if response.status_code != 200 or answer.get("status") != "success":
        raise ReadoutError(f"Prometheus refused {expr!r}: {answer.get('error', response.status_code)}")
    out: dict[str, float] = {}
    for series in answer["data"]["result"]:
        value = float(series["value"][1])
        if not math.isnan(value):
            out[series["metric"].get("variant", "")] = value
    return out


def fetch_counts(
    prometheus: str, window: str, mode: str | None = None, *, timeout: float = 10.0,
    transport: httpx.BaseTransport | None = None,
) -> list[ArmCounts]:  # fmt: skip
    """Impressions and clicks per variant from Prometheus's HTTP API, rounded to whole events
    (``increase`` extrapolates to the window's edges). ``ReadoutError`` when there is no data."""
    with httpx.Client(timeout=timeout, transport=transport) as client:
        impressions = _query(client, prometheus, counter_query(IMPRESSIONS, window, mode))
        clicks = _query(client, prometheus, counter_query(CLICKS, window, mode))
    if not any(impressions.values()) and not any(clicks.values()):
        raise ReadoutError(
            f"no feedback counted in Prometheus at {prometheus} over {window} (is the service scraped, "
            "and are clients posting to /feedback?)"
        )
    return [
        ArmCounts(v, round(impressions.get(v, 0.0)), round(clicks.get(v, 0.0)))
        for v in sorted(set(impressions) | set(clicks))
    ]


def readout_from_prometheus(
    prometheus: str, control: str = "control", window: str = "30d", mode: str | None = None,
    *, confidence: float = 0.95, power: float = 0.8, transport: httpx.BaseTransport | None = None,
) -> Readout:  # fmt: skip
    """``fetch_counts`` then ``make_readout``: what ``m2grl ab report`` prints."""
    return make_readout(
        fetch_counts(prometheus, window, mode, transport=transport), control, confidence, power
    )
