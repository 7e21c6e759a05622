"""``m2grl tune``: search the few M2GRL settings that differ by dataset on its validation split (Optuna).

The dataset folder given is re-prepared from its own cleaned events with ``target`` moved one period back
(a ``test`` dataset gives its validation split; a ``valid`` dataset is scored on its own held-out period),
once per session gap tried, so the test split is never read. Each trial trains M2GRL on the train part
and scores HitRate@50 of the served general mode (``offline.evaluation``) on the held-out part.

Then the served mix: the best trial's model is merged with the co-occurrence, popularity and category
popularity channels of the same held-out dataset (``index.channels``, as ``build-index --channels`` serves
them) at each (cooc, popular, category_popular) triple of weights of the space. A log split by time also
gives the period before the validation one (:data:`MIX_PERIODS`), with a model of the same settings
trained on what precedes it; each triple's scores are pooled over the periods' users, since one period's
few hundred users leave the choice to chance. The triple with the best HitRate@50 + Recall@50 of the
merged answer is chosen: the channel weights trade the two (a shared popular list hits many users but
few of each user's items). Ties go to the triple nearest the default mix
(``offline.jobs.channels.DEFAULT_MIX``); a dataset without a side view has no category channel and scores
only its triples at weight 0.

Writes into the output folder: ``trials.md`` and ``trials.json`` (every trial: settings, HitRate@50,
Recall@50, seconds; every mix scored), ``best.toml`` (the chosen ``M2GRLConfig`` fields, read by ``m2grl
train --config``), ``best_prepare.toml`` (the chosen ``PrepareConfig`` fields, read by ``m2grl prepare
--config``) and ``best_mix.txt`` (the chosen mix, for ``m2grl build-index --default-mix``).
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
from offline.baselines.base import ItemModel
from offline.data.config import BadInputError, PrepareConfig
from offline.evaluation.config import ProtocolConfig

log = logging.getLogger(__name__)

#: Derived columns of a dataset's events table that ``prepare_dataset`` computes again.
_DERIVED = ("session", "split")
OBJECTIVE = "HitRate@50"
#: What the mix search maximises: the sum of these scores of the merged answer.
MIX_OBJECTIVE = ("HitRate@50", "Recall@50")
#: Held-out periods the mix is chosen on, counting back from the test period, where the log is split by
#: time and long enough (a log split per user has one).
MIX_PERIODS = 2


@dataclass(frozen=True)
class TuneSpace:
    """What a trial may choose. Session gaps are seconds (the dataset's own gap is always a candidate)."""

    weightings: tuple[str, ...] = ("adaptive", "bounded")
    max_weight_ratio: tuple[float, float] = (0.01, 1.0)
    align_item_grad: tuple[bool, ...] = (False, True)
    norm_exponent: tuple[float, float] = (0.0, 1.0)
    #: skip-gram windows, drawn log-uniformly: logs whose sequences link a user's sessions gain from
    #: windows past the default 9 when M2GRL is served alone (reports/quality-research.md)
    window: tuple[int, int] = (3, 40)
    dims: tuple[int, ...] = (64, 128, 256)
    epochs: tuple[int, int] = (3, 15)
    session_gaps_s: tuple[int, ...] = (3_600, 86_400, 7 * 86_400)
    #: weights of the cooc channel in the served mix (m2grl gets the rest); interior only, so the answer
    #: always draws on both channels
    cooc_weights: tuple[float, ...] = (0.25, 0.5, 0.75)
    #: weights of the popular channel beside them (0: left out)
    popular_weights: tuple[float, ...] = (0.0, 0.25, 0.35, 0.5, 0.75, 1.0)
    #: weights of the category channel beside them (0: left out)
    category_popular_weights: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75)

    def __post_init__(self) -> None:
        if not self.cooc_weights or not all(0.0 < w < 1.0 for w in self.cooc_weights):
            raise ValueError(f"cooc_weights must be non-empty and inside (0, 1), got {self.cooc_weights}")
        for name in ("popular_weights", "category_popular_weights"):
            weights = getattr(self, name)
            if not weights or not all(0.0 <= w <= 1.0 for w in weights):
                raise ValueError(f"{name} must be non-empty and inside [0, 1], got {weights}")


def prepare_config_from_manifest(manifest: DatasetManifest) -> PrepareConfig:
    """The ``PrepareConfig`` a dataset folder was prepared with (as stored in its manifest)."""
    stored = {k: v for k, v in manifest.config.items() if k in PrepareConfig.model_fields}
    return PrepareConfig(**stored)


def held_out_dataset(
    dataset_dir: Path, gap_s: int, workdir: Path, *, fresh: bool = False, back: int = 1
) -> Path:
    """The dataset re-prepared with session gap ``gap_s`` and as held-out part the period ``back`` periods
    before its test one (1: the validation period; more needs a log split by time), cached in ``workdir``
    unless ``fresh``. Raises ``BadInputError`` when no training part would be left."""
    from offline.data.prepare import prepare_dataset

    out = workdir / (f"valid-gap{gap_s}" if back == 1 else f"valid{back}-gap{gap_s}")
    if (out / "manifest.json").exists() and not fresh:
        return out
    layout = DatasetLayout(dataset_dir)
    manifest = DatasetManifest.read(dataset_dir)
    config = prepare_config_from_manifest(manifest)
    events = pq.read_table(layout.events)
    events = events.drop_columns([c for c in _DERIVED if c in events.column_names])
    start = int(pc.min(events["timestamp"]).as_py())
    end_ts = _time_split_end(manifest)
    period = round(config.test_days * 86_400)
    changes: dict[str, Any] = {"target": "valid"}
    if back > 1:
        if end_ts is None:
            raise ValueError(f"only a log split by time has periods before its validation one (back={back})")
        # Events up to the end of the period after the held-out one, whose validation period it is.
        cut = end_ts - (back - 1) * period
        changes["time_window"] = (min(start, cut - 1), cut)
    elif manifest.target == "valid":
        # Its events end where the validation period does: that period becomes the held-out one.
        changes["target"] = "test"
        if end_ts is not None:
            changes["time_window"] = (min(start, end_ts - 1), end_ts - period)
    config = config.with_session_gap(gap_s).replace(**changes)
    return prepare_dataset(events, out, config, overwrite=True)


def _time_split_end(manifest: DatasetManifest) -> int | None:
    """The exclusive end of the data period of a dataset split by time; None for a split per user."""
    end = manifest.split.get("end")
    return int(end) if manifest.split.get("kind") == "global_time" and end is not None else None


def held_out_periods(dataset_dir: Path, gap_s: int, workdir: Path, *, fresh: bool = False) -> list[Path]:
    """The held-out datasets (:func:`held_out_dataset`) the served mix is chosen on: the validation period
    and, for a log split by time, the periods before it up to :data:`MIX_PERIODS`, while each leaves a
    training part."""
    periods = [held_out_dataset(dataset_dir, gap_s, workdir, fresh=fresh)]
    if _time_split_end(DatasetManifest.read(dataset_dir)) is not None:
        for back in range(2, MIX_PERIODS + 1):
            try:
                periods.append(held_out_dataset(dataset_dir, gap_s, workdir, fresh=fresh, back=back))
            except BadInputError:  # the log is too short to hold that period out
                break
    return periods


def _score(
    dataset_dir: Path,
    model: ItemModel,
    mixes: Sequence[Mapping[str, float]] = (),
    protocol: ProtocolConfig | None = None,
) -> list[dict[str, float]]:
    """HitRate@50 and Recall@50 (and the users scored) of the model's served general mode alone, then
    merged by each of ``mixes`` with the dataset's channels."""
    from offline.baselines.base import load_train_data
    from offline.evaluation.job import load_eval_data
    from offline.evaluation.protocol import evaluate_retriever
    from offline.evaluation.retrievers import mixed_retrievers, serving_retriever
    from offline.jobs.channels import dataset_channels

    protocol = (protocol or ProtocolConfig()).replace(ks=(50,))
    data = load_eval_data(dataset_dir, protocol)
    train = load_train_data(dataset_dir)
    retrievers = [serving_retriever(train.items, train.attributes, model, 50)]
    if mixes:
        topn = 200
        channels = dataset_channels(dataset_dir, train.items, topn)
        retrievers += mixed_retrievers(train.items, train.attributes, model, channels, mixes, topn)
    out = []
    for retriever in retrievers:
        scores = evaluate_retriever(data, retriever, "general", protocol)
        out.append({k: scores[k] for k in ("HitRate@50", "Recall@50", "users")})
    return out


def _trained_model(model_dir: Path, dataset_dir: Path, norm_exponent: float) -> ItemModel:
    from offline.evaluation.job import served_m2grl, views_of

    return served_m2grl(model_dir, views_of(dataset_dir)[0], norm_exponent)


def score_mixes(
    dataset_dir: Path, model: ItemModel, space: TuneSpace, protocol: ProtocolConfig | None = None
) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """The scores of ``model`` served alone on ``dataset_dir``'s held-out split, then one row per (cooc,
    popular, category_popular) triple of ``space``: its weights, its mix text and its scores. A dataset
    without a side view has no category channel: only its triples at weight 0 are scored."""
    triples = weight_triples(space, categories=bool(DatasetManifest.read(dataset_dir).views[1:]))
    mixes = [served_mix(c, p, q) for c, p, q in triples]
    scores = _score(dataset_dir, model, mixes, protocol)
    rows = [
        {"cooc_weight": c, "popular_weight": p, "category_popular_weight": q, "mix": mix_text(m), **sc}
        for (c, p, q), m, sc in zip(triples, mixes, scores[1:], strict=True)
    ]
    return scores[0], rows


def weight_triples(space: TuneSpace, *, categories: bool) -> list[tuple[float, float, float]]:
    """The (cooc, popular, category_popular) weights the mix search scores: every combination of
    ``space``'s, or only those at category weight 0 for a dataset without ``categories`` (no side view,
    so no category channel)."""
    qs = space.category_popular_weights if categories else (0.0,)
    return [(c, p, q) for c in space.cooc_weights for p in space.popular_weights for q in qs]


def validation_splits(dataset_dir: Path, workdir: Path) -> list[Path]:
    """``dataset_dir`` re-prepared into ``workdir`` with its own session gap, once per held-out period
    the mix is chosen on (:func:`held_out_periods`; the first is the validation split). Kept while newer
    than ``dataset_dir`` (a re-prepared source is prepared again; an unchanged one keeps the
    byte-identical inputs its models were trained on)."""
    gap = prepare_config_from_manifest(DatasetManifest.read(dataset_dir)).session_gap_s
    kept = workdir / f"valid-gap{gap}" / "manifest.json"
    stale = not kept.exists() or kept.stat().st_mtime < DatasetLayout(dataset_dir).manifest.stat().st_mtime
    return held_out_periods(dataset_dir, gap, workdir, fresh=stale)


def pooled_scores(
    held_outs: Sequence[tuple[Path, ItemModel]], space: TuneSpace, protocol: ProtocolConfig | None = None
) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """:func:`score_mixes` on each held-out dataset with the model trained on its train part, pooled:
    each score is the mean over the periods weighted by their users, and ``users`` their sum."""
    scored = [score_mixes(held_out, model, space, protocol) for held_out, model in held_outs]
    alone = pool_by_users([a for a, _ in scored])
    rows = [
        {**per_period[0], **pool_by_users(per_period)}
        for per_period in zip(*(r for _, r in scored), strict=True)
    ]
    return alone, rows


def pool_by_users(scores: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """The :data:`MIX_OBJECTIVE` scores of several held-out periods as one: means weighted by each
    period's ``users`` (as if scored on all their users at once), and the users summed."""
    users = sum(float(s["users"]) for s in scores)
    pooled = {
        k: sum(float(s[k]) * float(s["users"]) for s in scores) / max(users, 1.0) for k in MIX_OBJECTIVE
    }
    return {**pooled, "users": users}


def validation_mix(
    held_outs: Sequence[tuple[Path, ItemModel]],
    protocol: ProtocolConfig | None = None,
    space: TuneSpace | None = None,
) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """The served mix chosen on the held-out datasets (:func:`validation_splits`), each with the model
    trained on its train part: every triple of weights of ``space`` is scored under ``protocol``, pooled
    over the periods (:func:`pooled_scores`), and the best :data:`MIX_OBJECTIVE` wins (ties: nearest the
    default mix). Returns the mix and every triple's pooled row."""
    _, rows = pooled_scores(held_outs, space or TuneSpace(), protocol)
    return served_mix(*best_weights(rows)), rows


def served_mix(cooc: float, popular: float, category_popular: float = 0.0) -> dict[str, float]:
    """The served mix giving the cooc channel ``cooc`` and M2GRL the rest, with the popular and category
    channels at ``popular`` and ``category_popular`` beside them (each left out at 0)."""
    beside = {"popular": popular, "category_popular": category_popular}
    return {"m2grl": 1.0 - cooc, "cooc": cooc, **{c: w for c, w in beside.items() if w > 0}}


def mix_text(mix: Mapping[str, float]) -> str:
    """``{"m2grl": 0.75, "cooc": 0.25}`` -> ``"m2grl=0.75,cooc=0.25"`` (what ``index.channels.parse_mix`` reads)."""
    return ",".join(f"{name}={weight:g}" for name, weight in mix.items())


#: The channels whose weights the mix search chooses (M2GRL gets one minus cooc's).
_SEARCHED = ("cooc", "popular", "category_popular")


def best_weights(rows: Sequence[Mapping[str, Any]]) -> tuple[float, float, float]:
    """The (cooc, popular, category_popular) weights of the row with the best :data:`MIX_OBJECTIVE`; ties
    go to the triple nearest the default mix (a row without a category weight has it at 0)."""
    from offline.jobs.channels import DEFAULT_MIX

    def weights(r: Mapping[str, Any]) -> tuple[float, float, float]:
        c, p, q = (float(r.get(f"{name}_weight", 0.0)) for name in _SEARCHED)
        return c, p, q

    def distance(r: Mapping[str, Any]) -> float:
        return sum(abs(w - DEFAULT_MIX.get(c, 0.0)) for c, w in zip(_SEARCHED, weights(r), strict=True))

    def objective(r: Mapping[str, Any]) -> float:
        return sum(float(r[k]) for k in MIX_OBJECTIVE)

    return weights(max(rows, key=lambda r: (objective(r), -distance(r))))


def _fit(held_out: Path, model_dir: Path, config: M2GRLConfig) -> ItemModel:
    """``config`` trained on ``held_out``'s train part, served as the index serves it."""
    from offline.jobs.train import train_m2grl

    out = Path(train_m2grl(held_out, model_dir, config, overwrite=True))
    return _trained_model(out, held_out, config.norm_exponent)


def tune_mix(dataset_dir: Path, output_dir: Path, config: M2GRLConfig | None = None) -> str:
    """Choose only the served mix (no search): train ``config`` once per held-out period of
    ``dataset_dir`` (:func:`validation_splits`) and score every triple of weights of the default space
    with it. Writes ``best_mix.txt`` and ``mixes.md``; returns the mix text."""
    config = config or M2GRLConfig()
    dataset_dir, output_dir = Path(dataset_dir), Path(output_dir)
    workdir = output_dir / "work"
    held_outs = validation_splits(dataset_dir, workdir)
    models = [(h, _fit(h, workdir / f"model{i}", config)) for i, h in enumerate(held_outs)]
    mix, rows = validation_mix(models)
    shutil.rmtree(workdir, ignore_errors=True)
    text = mix_text(mix)
    atomic_write_bytes(output_dir / "best_mix.txt", (text + "\n").encode())
    header = (
        f"# m2grl tune --mix-only on {dataset_dir} (seed {config.trainer.seed}): {len(held_outs)} held-out "
        f"period(s) before the test one, {rows[0]['users']:.0f} users{' pooled' if len(held_outs) > 1 else ''}\n"
    )
    atomic_write_bytes(output_dir / "mixes.md", (header + mixes_markdown(rows, text)).encode())
    return text


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
    best_model = workdir / "best-model"
    best_so_far: list[float] = []

    def objective(trial: optuna.Trial) -> float:
        gap = trial.suggest_categorical("session_gap_s", gaps)
        changes: dict[str, Any] = {
            "weighting": trial.suggest_categorical("weighting", list(space.weightings)),
            "align_item_grad": trial.suggest_categorical("align_item_grad", list(space.align_item_grad)),
            "norm_exponent": trial.suggest_float("norm_exponent", *space.norm_exponent),
            "window": trial.suggest_int("window", *space.window, log=True),
            "dim": trial.suggest_categorical("dim", list(space.dims)),
            "epochs": trial.suggest_int("epochs", *space.epochs),
        }
        if changes["weighting"] == "bounded":
            changes["max_weight_ratio"] = trial.suggest_float(
                "max_weight_ratio", *space.max_weight_ratio, log=True
            )
        config = base.replace(seed=seed, **changes)
        t0 = time.perf_counter()
        held_out = held_out_dataset(dataset_dir, gap, workdir)
        model_dir = Path(train_m2grl(held_out, workdir / "model", config, overwrite=True))
        scores = _score(held_out, _trained_model(model_dir, held_out, config.norm_exponent))[0]
        if not best_so_far or scores[OBJECTIVE] > max(best_so_far):  # kept for the mix below
            shutil.rmtree(best_model, ignore_errors=True)
            model_dir.rename(best_model)
        best_so_far.append(scores[OBJECTIVE])
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
    norm_exponent = float(best.get("norm_exponent", base.norm_exponent))
    # The mix on the best model and, for the earlier held-out periods, the same settings trained on each.
    first, *earlier = held_out_periods(dataset_dir, gap, workdir)
    best_config = base.replace(seed=seed, **chosen)
    models = [(first, _trained_model(best_model, first, norm_exponent))]
    models += [(h, _fit(h, workdir / f"model-period{i + 2}", best_config)) for i, h in enumerate(earlier)]
    alone, mix_rows = pooled_scores(models, space)
    mix = mix_text(served_mix(*best_weights(mix_rows)))
    shutil.rmtree(workdir, ignore_errors=True)  # the re-prepared datasets and the trials' models
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
    atomic_write_bytes(output_dir / "best_mix.txt", (mix + "\n").encode())
    atomic_write_json(
        output_dir / "trials.json",
        {
            "objective": OBJECTIVE,
            "best": best | {"session_gap_s": gap},
            "trials": rows,
            "mix": {"best": mix, "alone": alone, "mixes": mix_rows},
        },
    )
    atomic_write_bytes(
        output_dir / "trials.md", (trials_markdown(rows, header) + mixes_markdown(mix_rows, mix)).encode()
    )
    return best_path


def mixes_markdown(rows: Sequence[Mapping[str, Any]], chosen: str) -> str:
    """The served mixes scored (pooled over the held-out periods), one line each."""
    lines = [
        "",
        f"## Served mix (the trained model with the cooc, popular and category channels): chosen {chosen}",
        "",
        "| mix | HitRate@50 | Recall@50 |",
        "|---|---|---|",
    ]
    lines += [f"| {r['mix']} | {r['HitRate@50']:.4f} | {r['Recall@50']:.4f} |" for r in rows]
    return "\n".join(lines) + "\n"


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
