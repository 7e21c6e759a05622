"""Markdown + JSON report of an evaluation run (tables 2 and 3 of the paper, single- vs multi-view).

``results`` is the JSON-ready dict built by :mod:`offline.evaluation.job`:
``{"dataset": ..., "protocol": {...}, "methods": {name: {"mean": {metric: v}, "std": {...},
"seeds": {seed: {...}}, "fit_seconds": float, "eval_seconds": float}}, "notes": [...]}``, and optionally
``"paired": {"reference": name, "k": K, "rows": {name: {metric: [reference minus it, 95% half-width]}}}``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from core.atomic import atomic_write_bytes, atomic_write_json
from offline.evaluation.plots import write_curves
from offline.evaluation.protocol import bucket_name

ACCURACY = ("HitRate", "Recall", "Precision", "F1", "NDCG")
TABLE3 = (
    ("m2grl-paper", "paper: adaptive (eq. 10), alignment into item rows, inner product"),
    ("m2grl-uniform", "paper, uniform weights"),
    ("m2grl-static", "paper, static weights (5.3)"),
    ("m2grl-bounded", "bounded weights (ratio 0.1), alignment into item rows, cosine"),
    ("m2grl-global-clip", "default under one global clip (paper A.3)"),
    ("m2grl-ip", "default, inner product (norm exponent 0)"),
    ("m2grl-norm0.75", "default, norm exponent 0.75"),
    (
        "m2grl",
        "default: adaptive, side views aligned into the item space, item view clipped apart, cosine "
        "(norm exponent 1)",
    ),
)
VIEWS = (
    ("m2grl-single-view", "single-view (item graph only)"),
    ("m2grl", "multi-view (default)"),
    ("m2grl-paper", "multi-view (paper's setting)"),
)


def _cell(entry: dict[str, Any], metric: str, percent: bool = True) -> str:
    mean = entry["mean"].get(metric)
    if mean is None:
        return "n/a"
    std = entry["std"].get(metric, 0.0)
    scale = 100.0 if percent else 1.0
    return f"{mean * scale:.2f} ± {std * scale:.2f}"


def _table(
    methods: dict[str, Any], names: list[tuple[str, str]], columns: list[str], timing: bool
) -> list[str]:
    head = ["method", *columns] + (["fit s", "eval s"] if timing else [])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key, label in names:
        if key not in methods:
            continue
        entry = methods[key]
        cells = [_cell(entry, c) for c in columns]
        if timing:
            cells += [f"{entry['fit_seconds']:.1f}", f"{entry['eval_seconds']:.1f}"]
        lines.append("| " + " | ".join([label, *cells]) + " |")
    return lines


def summary_table(summary: Mapping[str, Mapping[str, Sequence[float]]], *, percent: bool) -> list[str]:
    """``{row: {metric: (mean, std)}}`` as markdown table lines, cells ``mean ± std`` (in % or as fractions)."""
    metrics = list(next(iter(summary.values())))
    lines = ["| row | " + " | ".join(metrics) + " |", "|" + "---|" * (len(metrics) + 1)]
    for row, values in summary.items():
        if percent:
            cells = [f"{values[m][0] * 100:.2f} ± {values[m][1] * 100:.2f}" for m in metrics]
        else:
            cells = [f"{values[m][0]:.4f} ± {values[m][1]:.4f}" for m in metrics]
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    return lines


def _diversity_table(diversity: dict[str, Any]) -> list[str]:
    """Section 6.1: general vs the incumbent general+filter vs the metric model's diversity mode."""
    return [
        "## Diversity (section 6.1): general, general + filter, metric-model diversity mode",
        "",
        "general+filter and diversity exclude the trigger's category and the user's recent categories. "
        "New* scores use the discovery ground truth; cells are mean ± std over seeds, in %.",
        "",
        *summary_table(diversity["summary"], percent=True),
        "",
    ]


def _long_tail_table(methods: dict[str, Any], k: int, freq_buckets: Sequence[Sequence[Any]]) -> list[str]:
    """HitRate and Recall@k per train-count bucket of the ground truth (the protocol's ``freq_buckets``)."""
    first = next(iter(methods.values()), None)
    if first is None:
        return []
    buckets = [b for lo, hi in freq_buckets if f"{(b := bucket_name(lo, hi))}HitRate@{k}" in first["mean"]]
    if not buckets:
        return []
    users = "; ".join(
        f"train count {b[4:-1]}: {int(first['mean'].get(f'{b}users', 0))} users" for b in buckets
    )
    cols = [f"{b}{m}@{k}" for b in buckets for m in ("HitRate", "Recall")]
    return [
        f"## Long tail @{k}: ground truth by its train count",
        "",
        "Each bucket keeps the test items seen that many times in train, and the users left with one "
        f"({users}); items unseen in train (cold) are in no bucket.",
        "",
        *_table(methods, [(m, m) for m in methods], cols, timing=False),
        "",
    ]


def _paired_table(results: dict[str, Any]) -> list[str]:
    """The reference row (the service's default variant) minus every other row, user by user, with the
    95% interval of the difference and whether it excludes zero."""
    paired = results.get("paired")
    if not paired or not paired["rows"]:
        return []
    ref, k = paired["reference"], paired["k"]
    metrics = list(next(iter(paired["rows"].values())))

    def cell(diff: float, half: float) -> str:
        verdict = "ahead" if diff - half > 0 else "behind" if diff + half < 0 else "within noise"
        return f"{diff * 100:+.2f} ± {half * 100:.2f} ({verdict})"

    lines = [
        f"## {ref} against each method @{k}, user by user",
        "",
        f"{ref} minus the method over the same {results['users']} test users (each user's figure averaged "
        "over seeds), ± the half-width of the 95% interval of that paired difference, in points; "
        "*ahead* / *behind* when the interval excludes 0.",
        "",
        "| method | " + " | ".join(f"{ref} − method, {m}" for m in metrics) + " |",
        "|" + "---|" * (len(metrics) + 1),
    ]
    rows = paired["rows"]
    order = [m for m in results.get("method_order", []) if m in rows]  # JSON files sort their keys
    for method in order + sorted(set(rows) - set(order)):
        lines.append(f"| {method} | " + " | ".join(cell(*rows[method][m]) for m in metrics) + " |")
    return lines + [""]


def render_markdown(results: dict[str, Any], pictures: dict[str, str] | None = None) -> str:
    """The human report: one table-2-like table per K (and the ``pictures`` of metric against K),
    discovery table, table 3, views, notes."""
    # the run's row order (JSON files sort their keys): M2GRL variants, served mixes, baselines
    order = [m for m in results.get("method_order", []) if m in results["methods"]]
    methods: dict[str, Any] = {
        m: results["methods"][m] for m in order + sorted(set(results["methods"]) - set(order))
    }
    ks: list[int] = results["protocol"]["ks"]
    all_names = [(m, m) for m in methods]
    seeds = results.get("seeds", [])
    out = [
        f"# Offline evaluation: {results['dataset']}",
        "",
        f"Protocol: {results['protocol_text']}",
        "",
        f"Test users: {results['users']}; users with a discovery ground truth: {results['discovery_users']}; "
        f"catalogue: {results['catalogue']} items. Seeds: {seeds}. Cells are mean ± std over seeds, in %.",
        "",
    ]
    if "truth_in_trigger_category" in results:
        out += [
            f"Ground-truth items in the category of the user's trigger: {results['truth_in_trigger_category']:.1%} "
            "(compare TriggerCategoryShare, the share of candidates in that category, in the discovery table).",
            "",
        ]
    for k in ks:
        out += [f"## Table 2 @{k} (every method)", ""]
        cols = [f"{m}@{k}" for m in ACCURACY] + [f"Coverage@{k}"]
        out += _table(methods, all_names, cols, timing=True) + [""]
    if results.get("served_mixes"):
        out += ["Mixes served by the served-* rows, per seed (channel=weight):", ""]
        out += [
            f"- {row}: " + "; ".join(f"seed {seed} {mix}" for seed, mix in by_seed.items())
            for row, by_seed in results["served_mixes"].items()
        ] + [""]
    out += _paired_table(results)
    if pictures:
        out += ["## Metrics against K", ""]
        out += [f"![{metric}@K]({name})" for metric, name in pictures.items()] + [""]
    mid = ks[len(ks) // 2]
    out += [
        f"## Discovery @{mid} (ground truth = test items in categories not touched in the last days of train)",
        "",
    ]
    cols = [f"New{m}@{mid}" for m in ("HitRate", "Recall", "Precision", "F1")]
    cols += [f"NewCategoryShare@{mid}", f"TriggerCategoryShare@{mid}"]
    out += _table(methods, all_names, cols, timing=False) + [""]
    if any(k in methods for k, _ in TABLE3 if k != "m2grl"):
        out += ["## Table 3: M2GRL loss weighting", ""]
        out += _table(methods, list(TABLE3), [f"HitRate@{mid}", f"Recall@{mid}"], timing=False) + [""]
    if "m2grl-single-view" in methods:
        out += ["## Single-view vs multi-view M2GRL", ""]
        out += _table(methods, list(VIEWS), [f"HitRate@{mid}", f"Recall@{mid}", f"NDCG@{mid}"], timing=False)
        out += [""]
    out += _long_tail_table(methods, mid, results["protocol"].get("freq_buckets", ()))
    if results.get("diversity"):
        out += _diversity_table(results["diversity"])
    if results.get("notes"):
        out += ["## Notes", ""] + [f"- {n}" for n in results["notes"]] + [""]
    return "\n".join(out)


def write_report(results: dict[str, Any], output_dir: Path, stem: str = "report") -> Path:
    """Write ``<stem>.json``, the HitRate@K / Recall@K pictures and ``<stem>.md`` embedding them (each
    file atomically) into ``output_dir``; returns the md path."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(output_dir / f"{stem}.json", results)
    pictures = write_curves(results, output_dir, stem) if len(results["protocol"]["ks"]) > 1 else {}
    md = output_dir / f"{stem}.md"
    atomic_write_bytes(md, render_markdown(results, pictures).encode())
    return md
