"""``m2grl tune``: search the few M2GRL settings that differ by dataset on its validation split (Optuna).

The dataset folder given is re-prepared from its own cleaned events with ``target`` moved one period back
(a ``test`` dataset gives its validation split; a ``valid`` dataset is scored on its own held-out period),
once per session gap tried, so the test split is never read. Each trial trains M2GRL on the train part
and scores HitRate@50 of the served general mode (``offline.evaluation``) on the held-out part.

Writes into the output folder: ``trials.md`` and ``trials.json`` (every trial: settings, HitRate@50,
Recall@50, seconds), ``best.toml`` (the chosen ``M2GRLConfig`` fields, read by ``m2grl train --config``)
and ``best_prepare.toml`` (the chosen ``PrepareConfig`` fields, read by ``m2grl prepare --config``).
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pyarrow.parquet as pq

from core.atomic import atomic_write_bytes, atomic_write_json
from core.config_files import toml_text
from core.layout import DatasetLayout
from core.manifests import DatasetManifest
from model.config import M2GRLConfig
from offline.data.config import PrepareConfig

log = logging.getLogger(__name__)

#: Derived columns of a dataset's events table that ``prepare_dataset`` computes again.
_DERIVED = ("session", "split")
OBJECTIVE = "HitRate@50"


@dataclass(frozen=True)
class TuneSpace:
    """What a trial may choose. Session gaps are seconds (the dataset's own gap is always a candidate)."""

    weightings: tuple[str, ...] = ("adaptive", "bounded")
    max_weight_ratio: tuple[float, float] = (0.01, 1.0)
    align_item_grad: tuple[bool, ...] = (False, True)
    norm_exponent: tuple[float, float] = (0.0, 1.0)
    window: tuple[int, int] = (3, 10)
    dims: tuple[int, ...] = (64, 128, 256)
    epochs: tuple[int, int] = (3, 15)
    session_gaps_s: tuple[int, ...] = (3_600, 86_400, 7 * 86_400)


def prepare_config_from_manifest(manifest: DatasetManifest) -> PrepareConfig:
    """The ``PrepareConfig`` a dataset folder was prepared with (as stored in its manifest)."""
    stored = {k: v for k, v in manifest.config.items() if k in PrepareConfig.model_fields}
    return PrepareConfig(**stored)


def _held_out_dataset(dataset_dir: Path, gap_s: int, workdir: Path) -> Path:
    """The dataset re-prepared with session gap ``gap_s`` and its target one period back (cached)."""
    from offline.data.prepare import prepare_dataset

    out = workdir / f"valid-gap{gap_s}"
    if (out / "manifest.json").exists():
        return out
    layout = DatasetLayout(dataset_dir)
    manifest = DatasetManifest.read(dataset_dir)
    config = prepare_config_from_manifest(manifest)
    events = pq.read_table(layout.events)
    events = events.drop_columns([c for c in _DERIVED if c in events.column_names])
    changes: dict[str, Any] = {"target": "valid"}
    if manifest.target == "valid":
        # Its events end where the validation period does: that period becomes the held-out one.
        changes["target"] = "test"
        end = manifest.split.get("end")
        if config.split == "global_time" and end is not None:
            start = int(pc.min(events["timestamp"]).as_py())
            changes["time_window"] = (min(start, int(end) - 1), int(end) - round(config.test_days * 86_400))
    config = config.with_session_gap(gap_s).replace(**changes)
    return prepare_dataset(events, out, config, overwrite=True)


def _score(dataset_dir: Path, model_dir: Path, norm_exponent: float) -> dict[str, float]:
    from offline.baselines.base import load_train_data
    from offline.evaluation.config import ProtocolConfig
    from offline.evaluation.job import load_eval_data, served_m2grl, views_of
    from offline.evaluation.protocol import evaluate_retriever
    from offline.evaluation.retrievers import serving_retriever

    protocol = ProtocolConfig(ks=(50,))
    data = load_eval_data(dataset_dir, protocol)
    train = load_train_data(dataset_dir)
    model = served_m2grl(model_dir, views_of(dataset_dir)[0], norm_exponent)
    scores = evaluate_retriever(
        data, serving_retriever(train.items, train.attributes, model, 50), "general", protocol
    )
    return {"HitRate@50": scores["HitRate@50"], "Recall@50": scores["Recall@50"]}


def tune(
    dataset_dir: Path,
    output_dir: Path,
    *,
    trials: int = 30,
    seed: int = 0,
    space: TuneSpace | None = None,
    base: M2GRLConfig | None = None,
    timeout_s: float | None = None,
    progress: bool = True,
) -> Path:
    """Run the search; returns the path of ``best.toml``. ``base`` holds the fields no trial changes."""
    import optuna

    from offline.jobs.train import train_m2grl

    space = space or TuneSpace()
    base = base or M2GRLConfig()
    dataset_dir, output_dir = Path(dataset_dir), Path(output_dir)
    if trials < 1:
        raise ValueError(f"trials must be >= 1, got {trials}")
    own_gap = prepare_config_from_manifest(DatasetManifest.read(dataset_dir)).session_gap_s
    gaps = sorted({*space.session_gaps_s, own_gap})
    workdir = output_dir / "work"
    workdir.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []

    def objective(trial: optuna.Trial) -> float:
        gap = trial.suggest_categorical("session_gap_s", gaps)
        changes: dict[str, Any] = {
            "weighting": trial.suggest_categorical("weighting", list(space.weightings)),
            "align_item_grad": trial.suggest_categorical("align_item_grad", list(space.align_item_grad)),
            "norm_exponent": trial.suggest_float("norm_exponent", *space.norm_exponent),
            "window": trial.suggest_int("window", *space.window),
            "dim": trial.suggest_categorical("dim", list(space.dims)),
            "epochs": trial.suggest_int("epochs", *space.epochs),
        }
        if changes["weighting"] == "bounded":
            changes["max_weight_ratio"] = trial.suggest_float(
                "max_weight_ratio", *space.max_weight_ratio, log=True
            )
        config = base.replace(seed=seed, **changes)
        t0 = time.perf_counter()
        held_out = _held_out_dataset(dataset_dir, gap, workdir)
        model_dir = train_m2grl(held_out, workdir / "model", config, overwrite=True)
        scores = _score(held_out, Path(model_dir), config.norm_exponent)
        rows.append(
            {
                "trial": trial.number,
                "session_gap_s": gap,
                **changes,
                **scores,
                "seconds": time.perf_counter() - t0,
            }
        )
        return scores[OBJECTIVE]

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    study.optimize(objective, n_trials=trials, timeout=timeout_s, show_progress_bar=progress)
    best = dict(study.best_trial.params)
    gap = int(best.pop("session_gap_s"))
    chosen = {k: v for k, v in best.items() if k != "max_weight_ratio" or best.get("weighting") == "bounded"}
    shutil.rmtree(workdir, ignore_errors=True)  # the re-prepared datasets and the last trial's model
    header = (
        f"m2grl tune on {dataset_dir} ({len(rows)} trials, seed {seed}): best {OBJECTIVE} "
        f"{study.best_value:.4f} on the validation split (trial {study.best_trial.number})."
    )
    best_path = output_dir / "best.toml"
    atomic_write_bytes(
        best_path, toml_text(chosen, header + "\nUse: m2grl train --config best.toml").encode()
    )
    atomic_write_bytes(
        output_dir / "best_prepare.toml",
        toml_text(
            {"session_gap_s": gap}, header + "\nUse: m2grl prepare --config best_prepare.toml"
        ).encode(),
    )
    atomic_write_json(
        output_dir / "trials.json",
        {"objective": OBJECTIVE, "best": best | {"session_gap_s": gap}, "trials": rows},
    )
    atomic_write_bytes(output_dir / "trials.md", trials_markdown(rows, header).encode())
    return best_path


def trials_markdown(rows: Sequence[Mapping[str, Any]], header: str) -> str:
    """One line per trial, best first."""
    cols = [
        "trial",
        "session_gap_s",
        "weighting",
        "max_weight_ratio",
        "align_item_grad",
        "norm_exponent",
        "window",
        "dim",
        "epochs",
        "HitRate@50",
        "Recall@50",
        "seconds",
    ]
    lines = [f"# {header}", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in sorted(rows, key=lambda r: -float(r["HitRate@50"])):
        cells = []
        for c in cols:
            v = row.get(c, "")
            if not isinstance(v, float):
                cells.append(str(v))
            else:
                cells.append(
                    f"{v:.3g}"
                    if c in ("max_weight_ratio", "norm_exponent")
                    else f"{v:.1f}"
                    if c == "seconds"
                    else f"{v:.4f}"
                )
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
