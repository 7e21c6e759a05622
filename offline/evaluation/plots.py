"""Report pictures: HitRate@K and Recall@K against K, one line per method (mean over seeds, the band
one standard deviation), written beside ``report.md`` and embedded in it. Matplotlib ``Figure``
objects rendered by Agg: no display, no global pyplot state."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from core.atomic import atomic_write_bytes

#: metric -> file name suffix of its picture
CURVES = {"HitRate": "hitrate", "Recall": "recall"}


def curve_names(stem: str) -> dict[str, str]:
    """``{metric: file name}`` of the pictures of a report called ``<stem>.md``."""
    return {metric: f"{stem}-{suffix}-at-k.png" for metric, suffix in CURVES.items()}


def write_curves(results: dict[str, Any], output_dir: Path, stem: str) -> dict[str, str]:
    """One PNG per metric of :data:`CURVES` under ``output_dir``; returns ``{metric: file name}``."""
    ks: list[int] = sorted(results["protocol"]["ks"])
    names = curve_names(stem)
    for metric, name in names.items():
        fig = Figure(figsize=(7, 4.5))
        ax = fig.subplots()
        order = [m for m in results.get("method_order", []) if m in results["methods"]]
        for method in order + sorted(set(results["methods"]) - set(order)):
            entry = results["methods"][method]
            means = [100 * entry["mean"].get(f"{metric}@{k}", float("nan")) for k in ks]
            stds = [100 * entry["std"].get(f"{metric}@{k}", 0.0) for k in ks]
            style = "-" if method.startswith(("m2grl", "served-")) else "--"
            (line,) = ax.plot(ks, means, style, marker="o", markersize=3, label=method)
            ax.fill_between(
                ks, [m - s for m, s in zip(means, stds, strict=True)],
                [m + s for m, s in zip(means, stds, strict=True)], color=line.get_color(), alpha=0.12,
            )  # fmt: skip
        ax.set_xlabel("K (candidates per trigger)")
        ax.set_ylabel(f"{metric}@K (%)")
        ax.set_xticks(ks)
        ax.set_title(f"{results['dataset']}: {metric}@K (mean over seeds, band = 1 std)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=2, loc="upper left")
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=110)
        atomic_write_bytes(Path(output_dir) / name, buffer.getvalue())
    return names
