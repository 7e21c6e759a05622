"""``m2grl``: one CLI whose subcommands are thin mains over library functions.

Heavy libraries (torch, faiss, ibis) are imported inside each command so ``m2grl --help`` is instant and
``m2grl serve`` never loads training code.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import logging
import sys
from pathlib import Path
from typing import Annotated, Any, Literal, NoReturn

import typer

from core.config import default_of, describe, option_help
from index.config import IndexConfig

app = typer.Typer(
    name="m2grl",
    help="M2GRL multi-view graph representation learning and item-to-item candidate retrieval.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
index_app = typer.Typer(help="Manage published index versions (list, rollback).", no_args_is_help=True)
app.add_typer(index_app, name="index")
ab_app = typer.Typer(
    help="Read out the A/B experiment (CTR per variant from Prometheus).", no_args_is_help=True
)
app.add_typer(ab_app, name="ab")

log = logging.getLogger("m2grl")

Source = Literal["movielens", "taobao", "generic"]
#: ``build-index --cold-scale`` / ``--cold-decay`` defaults: ``offline.jobs.cold_items.DEFAULT_COLD_SCALE`` /
#: ``DEFAULT_COLD_DECAY`` (a test keeps them equal; the module is not imported here, so ``--help`` stays instant)
COLD_SCALE = 0.9
COLD_DECAY = 0.5
REPO_ROOT = Path(__file__).resolve().parent.parent
BUNDLED = {
    "movielens": REPO_ROOT / "data" / "movielens-small",
    "taobao": REPO_ROOT / "data" / "taobao-sample" / "UserBehavior_head_sample.csv.gz",
}


#: Shown instead of an option's help where its config module is not installed: the serve image ships
#: core, index, app and cli only, and its ``m2grl`` serves; the training commands need the full install.
NO_TRAINING_STACK = "(this install has no training stack)"


def _training_config(module: str, name: str) -> Any:
    """A config model of the training side (``model.config``, ``offline.data.config``), or None."""
    try:
        return getattr(importlib.import_module(module), name)
    except ModuleNotFoundError:
        return None


def _schema_help(module: str, model: str, name: str, *, note: str | None = None) -> str:
    """Help of an option read from field ``name`` of config ``module.model``: its description and default
    (``note`` replaces the shown default by words; ``""`` shows none, for options typer shows the default of)."""
    config = _training_config(module, model)
    if config is None:
        return NO_TRAINING_STACK
    if note == "":
        return describe(config, name)
    return option_help(config, name, note=note or "")


def _train_help(name: str) -> str:
    """Help of a ``train`` option: an M2GRL field, or a trainer field shown with M2GRL's default for it."""
    m2grl = _training_config("model.config", "M2GRLConfig")
    if m2grl is None or name in m2grl.model_fields:
        return _schema_help("model.config", "M2GRLConfig", name)
    trainer = m2grl.model_fields["trainer"].default_factory()
    return option_help(type(trainer), name, default=getattr(trainer, name))


def _prepare_help(name: str, note: str = "from the preset") -> str:
    return _schema_help("offline.data.config", "PrepareConfig", name, note=note)


def _format_help(name: str) -> str:
    return "Generic CSV. " + _schema_help("offline.data.config", "LogFormat", name)


def _protocol_help(name: str) -> str:
    return _schema_help("offline.evaluation.config", "ProtocolConfig", name)


def _fail(message: str, code: int = 2) -> NoReturn:
    """Print a one-line error (no stack trace) and exit: the only place that exits the process."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # faiss's loader logs each optimised build it cannot import (avx512, avx2) before the one it uses
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)


@app.callback()
def main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False) -> None:
    _setup_logging(verbose)


def _int_list(text: str, option: str) -> tuple[int, ...]:
    """``"20,50"`` -> ``(20, 50)``; anything else ends in one clear line."""
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        _fail(f"{option} expects comma-separated integers, got {text!r}")


def _mix_text(value: str) -> str:
    """A mix given inline, or the first line of a file holding one (``m2grl tune``'s best_mix.txt)."""
    path = Path(value)
    if "=" not in value and path.is_file():
        return path.read_text().strip()
    return value


def _parse_mapping(pairs: list[str], option: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        if "=" not in pair:
            _fail(f"{option} expects KEY=VALUE, got {pair!r}")
        key, value = pair.split("=", 1)
        out[key.strip()] = value.strip()
    return out


@app.command()
def prepare(
    source: Annotated[
        str, typer.Option(help="Log format: movielens, taobao or generic (CSV/Parquet).")
    ] = "movielens",
    input: Annotated[
        Path | None,
        typer.Option(
            "--input",
            help="Raw log: a MovieLens release folder (ml-latest ratings.csv + movies.csv, 1M/10M ratings.dat "
            "+ movies.dat, or 100K u.data + u.item) or its ratings file, Taobao CSV(.gz), or a generic "
            "CSV (.gz/.zst) or Parquet file/folder. Defaults to the bundled sample for movielens/taobao.",
        ),
    ] = None,
    output: Annotated[Path, typer.Option(help="Dataset folder to write (atomically).")] = Path(
        "artifacts/dataset"
    ),
    engine: Annotated[str, typer.Option(help="Relational engine: duckdb (embedded) or spark.")] = "duckdb",
    spark_master: Annotated[str, typer.Option(help="Spark master URL when --engine spark.")] = "local[2]",
    memory_limit: Annotated[
        str | None,
        typer.Option(
            help="Engine memory cap, e.g. 6GB (DuckDB spills to disk beyond it; Spark driver memory). "
            "Default: the engine's own (DuckDB: 80% of RAM)."
        ),
    ] = None,
    target: Annotated[str, typer.Option(help=_prepare_help("target", note=""))] = "test",
    column: Annotated[
        list[str],
        typer.Option(
            help="Generic source only: canonical=source column mapping, by header name or by field position "
            "from 1, repeatable or comma-separated, e.g. --column user_id=uid,item_id=2,timestamp=ts."
        ),
    ] = [],  # noqa: B006 - typer needs a literal default
    delimiter: Annotated[str | None, typer.Option(help=_format_help("delimiter"))] = None,
    header: Annotated[
        bool | None,
        typer.Option(
            "--header/--no-header",
            help="Generic CSV: whether line 1 names the columns (default: yes when mapped by name; by "
            "position, yes only when line 1's timestamp does not parse).",
        ),
    ] = None,
    encoding: Annotated[str | None, typer.Option(help=_format_help("encoding"))] = None,
    time_format: Annotated[
        str | None,
        typer.Option(
            help=_format_help("time_format") + " E.g. '%d/%m/%Y %H:%M'; auto: unix s/ms or ISO-8601."
        ),
    ] = None,
    timezone: Annotated[str | None, typer.Option(help=_format_help("timezone"))] = None,
    behavior: Annotated[
        list[str],
        typer.Option(
            help="Generic: source=canonical behaviour names, repeatable or comma-separated, e.g. "
            "--behavior purchase=buy,add_to_cart=cart; other values stay as they are (kept behaviours: "
            "view, cart, fav, buy, rating)."
        ),
    ] = [],  # noqa: B006 - typer needs a literal default
    split: Annotated[str | None, typer.Option(help=_prepare_help("split"))] = None,
    test_days: Annotated[float | None, typer.Option(help=_prepare_help("test_days"))] = None,
    test_fraction: Annotated[float | None, typer.Option(help=_prepare_help("test_fraction"))] = None,
    views: Annotated[
        str | None, typer.Option(help="Comma-separated views, item view first (default from the preset).")
    ] = None,
    walks_per_node: Annotated[int | None, typer.Option(help=_prepare_help("walks_per_node"))] = None,
    session_gap: Annotated[
        int | None,
        typer.Option(
            help=_prepare_help(
                "session_gap_s", "from the preset: MovieLens one year, Taobao and generic one week"
            )
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            help="TOML file of PrepareConfig fields over the preset (e.g. `m2grl tune`'s best_prepare.toml); "
            "the options above override it."
        ),
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output folder.")] = False,
) -> None:
    """Raw behaviour logs -> cleaned events, sessions, one graph per view, sequences, splits."""
    if source not in ("movielens", "taobao", "generic"):
        _fail(f"unknown --source {source!r}; valid: movielens, taobao, generic")
    if engine not in ("duckdb", "spark"):
        _fail(f"unknown --engine {engine!r}; valid: duckdb, spark")
    if target not in ("test", "valid"):
        _fail(f"unknown --target {target!r}; valid: test, valid")
    path = input or BUNDLED.get(source)
    if path is None:
        _fail("--input is required for the generic source")
    if not path.exists():
        _fail(f"input {path} does not exist")
    generic_only = {
        "--column": column,
        "--delimiter": delimiter,
        "--header/--no-header": header,
        "--encoding": encoding,
        "--time-format": time_format,
        "--timezone": timezone,
        "--behavior": behavior,
    }
    used = [name for name, value in generic_only.items() if value not in (None, False, [])]
    if source != "generic" and used:
        _fail(f"{', '.join(used)}: only for --source generic (the {source} format is fixed)")
    from core.config_files import read_toml_overrides
    from core.manifests import DatasetManifest
    from offline.data.config import LogFormat
    from offline.data.prepare import drop_summary, prepare_from_source
    from offline.data.presets import preset

    try:
        prepare_config = preset(source)  # type: ignore[arg-type]
        if config is not None:
            prepare_config = read_toml_overrides(config, prepare_config)
        if session_gap is not None:
            prepare_config = prepare_config.with_session_gap(session_gap)
        flags: dict[str, Any] = {"split": split, "test_days": test_days, "test_fraction": test_fraction}
        prepare_config = prepare_config.replace(**{k: v for k, v in flags.items() if v is not None})
        given = {"encoding": encoding, "timezone": timezone, "time_format": time_format}  # None: default
        log_format = LogFormat(
            delimiter=delimiter,
            header=header,
            behavior_map=_parse_mapping(_split_commas(behavior), "--behavior"),
            **{k: v for k, v in given.items() if v is not None},
        )
        out = prepare_from_source(
            source,  # type: ignore[arg-type]
            path,
            output,
            config=prepare_config,
            engine=engine,
            spark_master=spark_master,
            target=target,  # type: ignore[arg-type]
            column_map=_parse_mapping(_split_commas(column), "--column") or None,
            log_format=log_format if source == "generic" else None,
            views=tuple(v.strip() for v in views.split(",")) if views else None,
            walks_per_node=walks_per_node,
            memory_limit=memory_limit,
            overwrite=overwrite,
        )
    except (FileExistsError, FileNotFoundError, ValueError) as exc:
        _fail(str(exc))
    manifest = DatasetManifest.read(out).model_dump()
    for note in manifest.get("input_notes", []):
        typer.echo(f"read: {note}")
    typer.echo(drop_summary(manifest))
    typer.echo(f"dataset written to {out}")


def _split_commas(values: list[str]) -> list[str]:
    """``["a=1,b=2", "c=3"]`` -> ``["a=1", "b=2", "c=3"]``: options given repeated or comma-separated."""
    return [part for value in values for part in value.split(",") if part.strip()]


@app.command()
def train(
    dataset: Annotated[Path, typer.Option(help="Dataset folder written by `m2grl prepare`.")] = Path(
        "artifacts/dataset"
    ),
    output: Annotated[Path, typer.Option(help="Model folder to write (atomically).")] = Path(
        "artifacts/model"
    ),
    epochs: Annotated[int | None, typer.Option(help=_train_help("epochs"))] = None,
    dim: Annotated[int | None, typer.Option(help=_train_help("dim"))] = None,
    batch_size: Annotated[int | None, typer.Option(help=_train_help("batch_size"))] = None,
    lr: Annotated[float | None, typer.Option(help=_train_help("lr"))] = None,
    sparse_optimizer: Annotated[str | None, typer.Option(help=_train_help("sparse_optimizer"))] = None,
    sparse_lr: Annotated[float | None, typer.Option(help=_train_help("sparse_lr"))] = None,
    lr_schedule: Annotated[str | None, typer.Option(help=_train_help("lr_schedule"))] = None,
    window: Annotated[int | None, typer.Option(help=_train_help("window"))] = None,
    negatives: Annotated[int | None, typer.Option(help=_train_help("negatives"))] = None,
    weighting: Annotated[str | None, typer.Option(help=_train_help("weighting"))] = None,
    max_weight_ratio: Annotated[float | None, typer.Option(help=_train_help("max_weight_ratio"))] = None,
    align_item_grad: Annotated[bool | None, typer.Option(help=_train_help("align_item_grad"))] = None,
    clip_item_apart: Annotated[bool | None, typer.Option(help=_train_help("clip_item_apart"))] = None,
    norm_exponent: Annotated[float | None, typer.Option(help=_train_help("norm_exponent"))] = None,
    config: Annotated[
        Path | None, typer.Option(help="TOML file of M2GRLConfig fields (e.g. `m2grl tune`'s best.toml).")
    ] = None,
    seed: Annotated[int | None, typer.Option(help=_train_help("seed"))] = None,
    device: Annotated[str | None, typer.Option(help=_train_help("device"))] = None,
    walks: Annotated[bool | None, typer.Option(help=_train_help("walks"))] = None,
    resume: Annotated[bool, typer.Option(help="Resume from the last epoch checkpoint.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output folder.")] = False,
    init_from: Annotated[
        Path | None,
        typer.Option(
            help="Warm start from a previous model folder: known rows copied, new items placed from "
            "their side views, a fresh optimiser (the daily refresh)."
        ),
    ] = None,
) -> None:
    """Train M2GRL (intra-view skip-gram, inter-view alignment, uncertainty weighting). Works under torchrun."""
    from model.config import M2GRLConfig
    from offline.jobs.train import train_m2grl

    overrides = {
        k: v
        for k, v in dict(
            epochs=epochs,
            dim=dim,
            batch_size=batch_size,
            lr=lr,
            sparse_optimizer=sparse_optimizer,
            sparse_lr=sparse_lr,
            lr_schedule=lr_schedule,
            window=window,
            negatives=negatives,
            weighting=weighting,
            max_weight_ratio=max_weight_ratio,
            align_item_grad=align_item_grad,
            clip_item_apart=clip_item_apart,
            norm_exponent=norm_exponent,
            seed=seed,
            device=device,
            walks=walks,
        ).items()
        if v is not None
    }
    from core.config_files import read_toml_overrides

    try:
        base = read_toml_overrides(config, M2GRLConfig()) if config is not None else M2GRLConfig()
        train_config = base.replace(**overrides)
        out = train_m2grl(
            dataset, output, train_config, resume=resume, overwrite=overwrite, init_from=init_from
        )
    except (FileExistsError, FileNotFoundError, ValueError) as exc:
        _fail(str(exc))
    typer.echo(f"model written to {out}")


@app.command("train-metric")
def train_metric(
    dataset: Annotated[
        Path, typer.Option(help="Dataset folder (train split gives the discovery pairs).")
    ] = Path("artifacts/dataset"),
    model: Annotated[Path, typer.Option(help="M2GRL model folder.")] = Path("artifacts/model"),
    output: Annotated[Path, typer.Option(help="Metric model folder to write.")] = Path("artifacts/metric"),
    epochs: Annotated[
        int | None, typer.Option(help=_schema_help("model.config", "MetricConfig", "epochs"))
    ] = None,
    seed: Annotated[
        int | None, typer.Option(help=_schema_help("model.config", "MetricConfig", "seed"))
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output folder.")] = False,
    resume: Annotated[
        bool, typer.Option(help="Continue from the newest per-epoch checkpoint of an interrupted run.")
    ] = False,
) -> None:
    """Train the contrastive multi-view metric model of section 6.1 (diversity embeddings)."""
    from model.config import MetricConfig
    from offline.jobs.diversity import train_metric_model

    overrides: dict[str, Any] = {k: v for k, v in dict(epochs=epochs, seed=seed).items() if v is not None}
    try:
        config = MetricConfig(**overrides)
        out = train_metric_model(dataset, model, output, config, overwrite=overwrite, resume=resume)
    except (FileExistsError, FileNotFoundError, ValueError) as exc:
        _fail(str(exc))
    typer.echo(f"metric model written to {out}")


@app.command()
def tune(
    dataset: Annotated[
        Path, typer.Option(help="Dataset folder; trials are scored on its validation split, never its test.")
    ] = Path("artifacts/dataset"),
    output: Annotated[
        Path, typer.Option(help="Folder for trials.md/json, best.toml, best_prepare.toml.")
    ] = Path("artifacts/tune"),
    trials: Annotated[int, typer.Option(help="Optuna trials (each trains M2GRL once).")] = 30,
    epochs: Annotated[
        str | None, typer.Option(help="Range of epochs searched, LO,HI (default 3,15).")
    ] = None,
    timeout: Annotated[
        float | None, typer.Option(help="Stop starting trials after this many seconds.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the sampler and of every trial's training.")] = 0,
    mix_only: Annotated[
        bool,
        typer.Option(
            "--mix-only",
            help="No search: train M2GRL (--config, else the defaults) on the validation split, and on the period "
            "before it when the log is split by time, and choose only the served mix's cooc, popular and "
            "category_popular weights on them (writes best_mix.txt and mixes.md).",
        ),
    ] = False,
    config: Annotated[
        Path | None, typer.Option(help="With --mix-only: a TOML of M2GRLConfig fields to train with.")
    ] = None,
) -> None:
    """Search task balancing, norm exponent, alignment, window, dimension, epochs and session gap on the validation
    split, then the served mix's cooc, popular and category_popular weights on the best trial's model."""
    from offline.evaluation.tune import TuneSpace, tune_mix
    from offline.evaluation.tune import tune as run_tune

    if mix_only:
        from core.config_files import read_toml_overrides
        from model.config import M2GRLConfig

        try:
            base = read_toml_overrides(config, M2GRLConfig()) if config is not None else M2GRLConfig()
            mix = tune_mix(dataset, output, base.replace(seed=seed))
        except (FileNotFoundError, ValueError) as exc:
            _fail(str(exc))
        typer.echo(
            f"mixes in {output / 'mixes.md'}; chosen mix {mix} "
            f"(m2grl build-index --default-mix {output / 'best_mix.txt'})"
        )
        return
    if config is not None:
        _fail("--config goes with --mix-only (a search chooses its own settings)")
    space = TuneSpace()
    if epochs is not None:
        bounds = _int_list(epochs, "--epochs")
        if len(bounds) != 2 or not 1 <= bounds[0] <= bounds[1]:
            _fail(f"--epochs expects LO,HI with 1 <= LO <= HI, got {epochs!r}")
        space = dataclasses.replace(space, epochs=(bounds[0], bounds[1]))
    try:
        best = run_tune(dataset, output, trials=trials, seed=seed, space=space, timeout_s=timeout)
    except (FileNotFoundError, ValueError) as exc:
        _fail(str(exc))
    mix = (output / "best_mix.txt").read_text().strip()
    typer.echo(
        f"trials in {output / 'trials.md'}; chosen config {best} (m2grl train --config {best}); "
        f"chosen mix {mix} (m2grl build-index --default-mix {mix})"
    )


@app.command()
def evaluate(
    dataset: Annotated[Path, typer.Option(help="Dataset folder.")] = Path("artifacts/dataset"),
    model: Annotated[
        Path | None, typer.Option(help="Trained M2GRL folder (trained anew when absent).")
    ] = None,
    output: Annotated[Path, typer.Option(help="Report folder (report.md, report.json).")] = Path(
        "artifacts/report"
    ),
    methods: Annotated[
        str | None, typer.Option(help="Comma-separated methods (default: M2GRL and every baseline).")
    ] = None,
    seeds: Annotated[str, typer.Option(help="Comma-separated seeds.")] = "0,1,2",
    diversity: Annotated[
        bool,
        typer.Option(
            help="Also train the section 6.1 metric model per seed and report general, general+filter and "
            "diversity mode on discovery metrics (needs the m2grl method)."
        ),
    ] = True,
    ks: Annotated[str | None, typer.Option(help="Comma-separated. " + _protocol_help("ks"))] = None,
    triggers: Annotated[int | None, typer.Option(help=_protocol_help("n_triggers"))] = None,
    exclude_seen: Annotated[
        bool | None, typer.Option("--exclude-seen/--no-exclude-seen", help=_protocol_help("exclude_seen"))
    ] = None,
    recent_days: Annotated[float | None, typer.Option(help=_protocol_help("recent_days"))] = None,
    served: Annotated[
        list[str] | None,
        typer.Option(
            help="A variant's general-mode mix scored through the serving code as row served-<variant>, "
            "VARIANT:MIX (e.g. 'control:m2grl=0.5,cooc=0.5'); repeatable; the first is the default variant. "
            "MIX 'validation': chosen per seed on the held-out periods before the test one as m2grl tune "
            "--mix-only does. "
            "Default: control:validation. 'none' for no served row."
        ),
    ] = None,
) -> None:
    """Compare M2GRL with the baselines on HitRate/Recall/Precision/F1/NDCG@K (tables 2 and 3 of the paper)."""
    from index.channels import parse_mix
    from offline.evaluation.config import ProtocolConfig
    from offline.evaluation.job import VALIDATION_MIX, ServedMix
    from offline.evaluation.job import evaluate as run_evaluation

    chosen = [m.strip() for m in methods.split(",")] if methods else None
    try:
        mixes: dict[str, ServedMix] | None = None
        if served:
            mixes = {}
            for spec in served:
                if spec.strip().lower() == "none":
                    continue
                variant, sep, mix = spec.partition(":")
                if not sep or not variant.strip():
                    raise ValueError(
                        f"--served: expected VARIANT:MIX like 'control:m2grl=0.5,cooc=0.5', got {spec!r}"
                    )
                mixes[variant.strip()] = (
                    VALIDATION_MIX
                    if mix.strip() == VALIDATION_MIX
                    else parse_mix(mix, f"--served {variant.strip()}")
                )
        given: dict[str, Any] = {
            "ks": _int_list(ks, "--ks") if ks is not None else None,
            "n_triggers": triggers,
            "exclude_seen": exclude_seen,
            "recent_days": recent_days,
        }
        protocol = ProtocolConfig(**{k: v for k, v in given.items() if v is not None})
        out = run_evaluation(
            dataset,
            output,
            methods=chosen,
            seeds=_int_list(seeds, "--seeds"),
            model_dir=model,
            protocol=protocol,
            diversity=diversity and (chosen is None or "m2grl" in chosen),
            served=mixes,
        )
    except (FileNotFoundError, ValueError) as exc:
        _fail(str(exc))
    typer.echo(f"report written to {out}")


@app.command("build-index")
def build_index(
    model: Annotated[Path, typer.Option(help="M2GRL model folder (instance-view embeddings).")] = Path(
        "artifacts/model"
    ),
    metric: Annotated[Path | None, typer.Option(help="Metric model folder (diversity mode).")] = None,
    index_root: Annotated[Path, typer.Option(help="Index root holding versions/ and CURRENT.")] = Path(
        "artifacts/index"
    ),
    index_type: Annotated[str, typer.Option(help=describe(IndexConfig, "index_type"))] = default_of(
        IndexConfig, "index_type"
    ),
    topn: Annotated[int, typer.Option(help=describe(IndexConfig, "topn"))] = default_of(IndexConfig, "topn"),
    recall_floor: Annotated[float, typer.Option(help=describe(IndexConfig, "recall_floor"))] = default_of(
        IndexConfig, "recall_floor"
    ),
    device: Annotated[str, typer.Option(help=describe(IndexConfig, "device"))] = default_of(
        IndexConfig, "device"
    ),
    retention: Annotated[int, typer.Option(help=describe(IndexConfig, "retention"))] = default_of(
        IndexConfig, "retention"
    ),
    pin: Annotated[
        list[str] | None,
        typer.Option(help="A version pruning must keep (repeatable), beside those of <index-root>/PINNED."),
    ] = None,
    serving_config: Annotated[
        Path | None,
        typer.Option(help="The service's settings file: the versions its A/B variants pin are kept."),
    ] = None,
    publish: Annotated[bool, typer.Option(help="Move CURRENT to the new version once it validates.")] = True,
    channels: Annotated[
        bool,
        typer.Option(
            help="Also build the co-occurrence (Item-CF), popularity and category popularity channels from the "
            "training data."
        ),
    ] = True,
    dataset: Annotated[
        Path | None,
        typer.Option(
            help="Dataset folder of the channels, of the explorer's titles and of the string ids the "
            "version serves (default: the one the model was trained on)."
        ),
    ] = None,
    default_mix: Annotated[
        str | None,
        typer.Option(
            help="Mix served when a variant names none, e.g. 'm2grl=0.5,cooc=0.5,popular=0.35', or a file "
            "holding one (the best_mix.txt of m2grl tune; default: that mix with --channels, else 'm2grl=1')."
        ),
    ] = None,  # fmt: skip
    cold_rule: Annotated[
        str,
        typer.Option(
            help="How catalogue items without training behaviour are placed from their side views: "
            "recent-mean (their group's items, the recently arrived ones weighted up), group-mean (all "
            "equally), or none to index the model's items only."
        ),
    ] = "recent-mean",
    cold_scale: Annotated[
        float,
        typer.Option(help="Cold items' general-mode vectors are multiplied by this, in (0, 1]."),
    ] = COLD_SCALE,
    cold_decay: Annotated[
        float,
        typer.Option(
            help="recent-mean: a trained item's weight falls by e for each this share of the trained "
            "items that first appeared after it."
        ),
    ] = COLD_DECAY,
) -> None:
    """Build a versioned FAISS index + precomputed item-to-item maps (and the cooc, popular and category_popular
    channels), with the dataset catalogue's cold items placed from their side views; publish atomically."""
    from app.settings import pinned_in_config_file
    from index.build import build_index as run_build
    from index.channels import parse_mix
    from index.config import IndexConfig
    from offline.jobs.channels import DEFAULT_MIX, channels_builder
    from offline.jobs.cold_items import cold_builder

    try:
        config = IndexConfig(
            index_type=index_type,
            topn=topn,
            recall_floor=recall_floor,
            device=device,  # type: ignore[arg-type]  # a str from the CLI, checked by the model
            retention=retention,
        )
        mix = parse_mix(_mix_text(default_mix), "--default-mix") if default_mix is not None else None
        pinned = set(pin or ()) | set(pinned_in_config_file(serving_config) if serving_config else ())
        built = channels_builder(model, dataset, topn) if channels else None
        cold = cold_builder(model, dataset, rule=cold_rule, scale=cold_scale, decay=cold_decay)
        if channels:
            mix = mix or DEFAULT_MIX
        version = run_build(
            model,
            index_root,
            config,
            metric_dir=metric,
            publish=publish,
            channels=built,
            default_mix=mix,
            pinned=pinned,
            dataset_dir=dataset,
            cold=cold,
        )
    except (FileNotFoundError, ValueError) as exc:
        _fail(str(exc))
    typer.echo(f"index version {version} built under {index_root}" + (" and published" if publish else ""))


@index_app.command("list")
def index_list(
    index_root: Annotated[Path, typer.Option(help="Index root.")] = Path("artifacts/index"),
) -> None:
    """List index versions; the served one is marked with *, pinned ones (PINNED file) say so, and a
    version that does not validate is marked refused with the reason (the service would refuse it)."""
    from index.publish import version_status

    for line in version_status(index_root):
        typer.echo(line)


@index_app.command("rollback")
def index_rollback(
    index_root: Annotated[Path, typer.Option(help="Index root.")] = Path("artifacts/index"),
    to: Annotated[str | None, typer.Option(help="Version to serve (default: the previous one).")] = None,
) -> None:
    """Point CURRENT back to an earlier complete version."""
    from index.publish import rollback

    try:
        version = rollback(index_root, to)
    except (FileNotFoundError, ValueError) as exc:
        _fail(str(exc))
    typer.echo(f"CURRENT -> {version}")


@ab_app.command("report")
def ab_report(
    prometheus: Annotated[str, typer.Option(help="Prometheus base URL.")] = "http://127.0.0.1:9090",
    control: Annotated[str, typer.Option(help="The variant the others are compared with.")] = "control",
    window: Annotated[
        str, typer.Option(help="Prometheus range (30d, 12h...) or 'total' (counters since the pods started).")
    ] = "30d",
    mode: Annotated[
        str | None, typer.Option(help="Only this mode (general, diversity); default all.")
    ] = None,
    confidence: Annotated[float, typer.Option(help="Confidence level of the intervals.")] = 0.95,
    power: Annotated[float, typer.Option(help="Power for the impressions needed per arm.")] = 0.8,
) -> None:
    """Impressions, clicks and CTR per variant; each variant's CTR difference from control with its
    Wald interval, the impressions needed per arm to call it, and the call."""
    from app.readout import ReadoutError, format_readout, readout_from_prometheus

    if not (0 < confidence < 1 and 0 < power < 1):
        _fail("--confidence and --power must be between 0 and 1")
    try:
        readout = readout_from_prometheus(
            prometheus, control, window, mode, confidence=confidence, power=power
        )
    except ReadoutError as exc:
        _fail(str(exc))
    typer.echo(format_readout(readout))


@app.command()
def serve(
    index_root: Annotated[Path, typer.Option(help="Index root to serve (hot-reloaded).")] = Path(
        "artifacts/index"
    ),
    host: Annotated[str, typer.Option(help="Bind address.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
    workers: Annotated[int, typer.Option(help="uvicorn worker processes.")] = 1,
    config_file: Annotated[Path | None, typer.Option(help="YAML/JSON settings (A/B variants...).")] = None,
) -> None:
    """Serve GET /i2i/{item_id} with uvicorn."""
    from cli.serving import ServeError, run_server

    try:
        run_server(index_root=index_root, host=host, port=port, workers=workers, config_file=config_file)
    except ServeError as exc:
        _fail(str(exc))


@app.command()
def synth(
    output: Annotated[Path, typer.Option(help="Folder of parquet chunks to write.")] = Path(
        "artifacts/synth"
    ),
    events: Annotated[
        int, typer.Option(help=_schema_help("offline.data.synth", "SynthConfig", "events", note=""))
    ] = 1_000_000,
    seed: Annotated[
        int | None, typer.Option(help=_schema_help("offline.data.synth", "SynthConfig", "seed"))
    ] = None,
) -> None:
    """Generate a synthetic behaviour log with planted multi-view structure."""
    from offline.data.synth import SynthConfig, generate

    given: dict[str, Any] = {} if seed is None else {"seed": seed}
    try:
        summary = generate(SynthConfig(events=events, **given), output)
    except (FileExistsError, ValueError) as exc:
        _fail(str(exc))
    typer.echo(json.dumps(summary.__dict__ if hasattr(summary, "__dict__") else str(summary), default=str))


@app.command()
def demo(
    source: Annotated[str, typer.Option(help="Bundled dataset: movielens or taobao.")] = "movielens",
    workdir: Annotated[Path, typer.Option(help="Where the demo writes its artifacts.")] = Path(
        "artifacts/demo"
    ),
    epochs: Annotated[int, typer.Option(help="Training epochs (the paper uses 10).")] = 5,
    port: Annotated[int, typer.Option(help="Port to serve on.")] = 8000,
    serve_after: Annotated[
        bool, typer.Option("--serve/--no-serve", help="Start the service at the end.")
    ] = True,
    fresh: Annotated[bool, typer.Option(help="Rebuild every stage even when its artifact exists.")] = False,
) -> None:
    """Bundled data -> prepare -> train -> metric model -> build index -> serve, printing a curl example."""
    from cli.demo import run_demo

    try:
        run_demo(source=source, workdir=workdir, epochs=epochs, port=port, serve=serve_after, fresh=fresh)
    except (FileNotFoundError, ValueError) as exc:
        _fail(str(exc))


if __name__ == "__main__":  # pragma: no cover - `python -m cli.main` (torchrun entry)
    sys.exit(app())
