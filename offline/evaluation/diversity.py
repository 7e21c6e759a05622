"""Discovery rows of the evaluation report for section 6.1, through the harness's API.

Three rows per (dataset, seed), all retrieved through ``offline.evaluation.protocol`` (hence through
``ServingIndex.batch_neighbours`` when the caller passes the served index):

- ``general``: general-mode neighbours of the trigger, no exclusion;
- ``general+filter``: the paper's incumbent, general neighbours with the trigger's category and the
  user's recent categories filtered out afterwards;
- ``diversity``: neighbours in the metric model's space ``z``, with the same categories excluded.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from index.inputs import read_inputs
from index.serving import ServingIndex
from model.config import MetricConfig
from offline.evaluation.config import ProtocolConfig
from offline.evaluation.protocol import EvalData, Retriever, evaluate_retriever
from offline.evaluation.report import summary_table
from offline.evaluation.reuse import metric_trained_on
from offline.jobs.diversity import input_checksums, train_metric_model

#: Row name -> (mode, exclude trigger category and recent categories).
DIVERSITY_ROWS: dict[str, tuple[str, bool]] = {
    "general": ("general", False),
    "general+filter": ("general", True),
    "diversity": ("diversity", True),
}
#: The columns the diversity table reports.
DIVERSITY_METRICS = ("HitRate@50", "NewHitRate@50", "NewRecall@50", "NewCategoryShare@50")


def diversity_rows(
    data: EvalData, retriever: Retriever, config: ProtocolConfig | None = None
) -> dict[str, dict[str, float]]:
    """``{row name: {metric: value}}`` for the three rows of ``DIVERSITY_ROWS`` on one retriever."""
    config = config or ProtocolConfig(ks=(50,))
    if 50 not in config.ks:
        raise ValueError(f"ProtocolConfig.ks must contain 50 for the diversity table, got {config.ks}")
    return {
        name: evaluate_retriever(
            data, retriever, mode, config, exclude_trigger_category=flt, exclude_recent_categories=flt
        )
        for name, (mode, flt) in DIVERSITY_ROWS.items()
    }


def mean_over_seeds(
    runs: Sequence[Mapping[str, Mapping[str, float]]], metrics: Sequence[str] = DIVERSITY_METRICS
) -> dict[str, dict[str, tuple[float, float]]]:
    """``{row: {metric: (mean, std)}}`` over the per-seed outputs of :func:`diversity_rows`."""
    if not runs:
        raise ValueError("mean_over_seeds needs at least one run")
    out: dict[str, dict[str, tuple[float, float]]] = {}
    for row in runs[0]:
        out[row] = {}
        for metric in metrics:
            values = np.array([run[row][metric] for run in runs], dtype=np.float64)
            out[row][metric] = (float(values.mean()), float(values.std()))
    return out


def markdown_table(title: str, summary: Mapping[str, Mapping[str, tuple[float, float]]]) -> str:
    """The diversity table of one dataset as markdown (mean ± std over seeds)."""
    return "\n".join([f"### {title}", "", *summary_table(summary, percent=False)]) + "\n"


def served_retriever(model_dir: Path, metric_dir: Path, topn: int = 200) -> Retriever:
    """The two-mode retriever the service would load for ``model_dir`` + ``metric_dir``.

    Reads the inputs with the index builder's own reader (``index.inputs.read_inputs``: general = inner
    product over ``e_i``, diversity = L2 over ``z``) and serves them through ``ServingIndex``.
    """
    inputs = read_inputs(model_dir, metric_dir)
    return ServingIndex.from_vectors(
        inputs.items,
        inputs.attributes,
        vectors={mode: m.vectors for mode, m in inputs.modes.items()},
        metrics={mode: m.metric for mode, m in inputs.modes.items()},
        topn=topn,
    )


def evaluate_diversity(
    dataset_dir: Path,
    model_dirs: Mapping[int, Path],
    workdir: Path,
    data: EvalData,
    *,
    metric_config: MetricConfig | None = None,
    config: ProtocolConfig | None = None,
    topn: int = 200,
) -> dict[str, Any]:
    """Train the metric model on every seed's M2GRL model and score the three rows of ``DIVERSITY_ROWS``.

    Args:
        dataset_dir: the ``DatasetLayout`` folder the models were trained on.
        model_dirs: seed -> trained M2GRL ``ModelLayout`` folder (the metric model uses the same seed).
        workdir: where the metric folders are written (``metric-seed<S>``).
        data: the protocol's arrays for the dataset's test split (``offline.evaluation.job.load_eval_data``).
    Returns:
        JSON-ready ``{"seeds": {seed: rows}, "summary": {row: {metric: [mean, std]}}, "fit_seconds": [...]}``.
    """
    base = metric_config or MetricConfig()
    runs: dict[int, dict[str, dict[str, float]]] = {}
    fit_seconds: list[float] = []
    for seed, model_dir in model_dirs.items():
        t0 = time.perf_counter()
        config_s = base.replace(seed=seed)
        metric_dir = Path(workdir) / f"metric-seed{seed}"
        if not metric_trained_on(
            metric_dir, config_s.to_dict(), input_checksums(dataset_dir, model_dir, config_s)
        ):
            metric_dir = train_metric_model(dataset_dir, model_dir, metric_dir, config_s, overwrite=True)
        fit_seconds.append(time.perf_counter() - t0)
        runs[seed] = diversity_rows(data, served_retriever(model_dir, metric_dir, topn), config)
    summary = mean_over_seeds(list(runs.values()))
    return {
        "seeds": {str(s): r for s, r in runs.items()},
        "summary": {row: {m: list(v) for m, v in values.items()} for row, values in summary.items()},
        "fit_seconds": fit_seconds,
        "metric_config": base.to_dict(),
    }
