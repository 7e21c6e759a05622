"""``evaluate(...)``: the library entry behind ``m2grl evaluate`` (tables 2 and 3 of the paper, one run).

For every method and seed: fit on the ``train`` split, build the service's retriever, run the protocol
on the ``test`` split once, record metrics and wall time. Tune on a ``target="valid"`` dataset folder,
report on the ``target="test"`` one: this function never picks hyper-parameters from what it measures.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
from tqdm import tqdm

from core.layout import DatasetLayout, ModelLayout
from core.manifests import DatasetManifest, ModelManifest
from core.types import Float64Array
from index.channels import check_mix
from model.config import M2GRLConfig
from offline.baselines.base import ItemModel, TrainData, load_train_data
from offline.baselines.registry import BASELINES, fit_baseline
from offline.evaluation.config import ProtocolConfig
from offline.evaluation.diversity import evaluate_diversity
from offline.evaluation.metrics import paired_difference
from offline.evaluation.protocol import (
    EvalData,
    Retriever,
    build_eval_data,
    per_user_scores,
    retrieve,
    score_candidates,
)
from offline.evaluation.report import write_report
from offline.evaluation.retrievers import RetrieverFactory, mixed_retriever, serving_retriever
from offline.evaluation.reuse import model_trained_on
from offline.evaluation.tune import mix_text, validation_mix, validation_splits
from offline.jobs.channels import dataset_channels
from offline.jobs.train import dataset_checksum, dataset_views, select_views, train_m2grl

log = logging.getLogger(__name__)

#: M2GRL variants: method -> changes to the default ``M2GRLConfig`` (table 3 has a row for each option,
#: the paper's setting included). ``m2grl-ip`` and ``m2grl-norm0.75`` are the ``m2grl`` model of the same
#: seed served with another norm exponent (no second training).
PAPER = {"weighting": "adaptive", "align_item_grad": True, "clip_item_apart": False, "norm_exponent": 0.0}
M2GRL_VARIANTS: dict[str, dict[str, Any]] = {
    "m2grl": {},
    "m2grl-ip": {"norm_exponent": 0.0},
    "m2grl-norm0.75": {"norm_exponent": 0.75},
    "m2grl-paper": PAPER,
    "m2grl-uniform": {**PAPER, "weighting": "uniform"},
    "m2grl-static": {**PAPER, "weighting": "static"},
    "m2grl-bounded": {"weighting": "bounded", "align_item_grad": True},
    "m2grl-global-clip": {"clip_item_apart": False},
    "m2grl-single-view": {},  # views: the dataset's item view only, set by the fitter
}
M2GRL_METHODS = tuple(M2GRL_VARIANTS)
#: Variants that serve the ``m2grl`` model itself (another norm exponent), never a training of their own.
SERVED_FROM_M2GRL = ("m2grl-ip", "m2grl-norm0.75")


def served_exponent(method: str, trained: float) -> float:
    """The norm exponent ``method`` is served with: its own, else the one its model was trained for."""
    return float(M2GRL_VARIANTS[method].get("norm_exponent", trained))


DEFAULT_METHODS = (*M2GRL_METHODS, *BASELINES)
#: A served variant's channel mix, or :data:`VALIDATION_MIX`.
ServedMix = Mapping[str, float] | str
#: Prefix of the rows that score a variant's served general mode (its channel mix over the m2grl model).
SERVED_PREFIX = "served-"
#: A served variant's mix given as this is chosen per seed on the dataset's validation split
#: (``offline.evaluation.tune.validation_mix``), as a deployment chooses it before building its index.
VALIDATION_MIX = "validation"
#: The served variants scored by default: the service's default variant with its mix chosen on validation.
DEFAULT_SERVED: dict[str, ServedMix] = {"control": VALIDATION_MIX}
#: the K of the report's paired comparison (the targets are @50; the largest K when 50 is not scored)
PAIRED_K = 50
#: ``(dataset_dir, method, seed, workdir) -> ItemModel`` for the M2GRL variants; swapped in tests.
M2GRLFitter = Callable[[Path, str, int, Path], ItemModel]


def load_eval_data(dataset_dir: Path, config: ProtocolConfig) -> EvalData:
    """Read a dataset folder's events and item vocabulary and build the protocol's arrays."""
    layout = DatasetLayout(Path(dataset_dir))
    views = DatasetManifest.read(dataset_dir).views
    category = f"{views[1]}_id" if len(views) > 1 else None
    events = pq.read_table(layout.events).to_pandas()
    if category is not None and category not in events.columns:
        category = None
    catalogue = np.load(layout.vocab(views[0])).astype(np.int64)
    return build_eval_data(events, catalogue, category_column=category, config=config)


def check_run(
    methods: Sequence[str],
    valid: Sequence[str],
    seeds: Sequence[int],
    topn: int,
    protocol: ProtocolConfig,
    *,
    kind: str = "methods",
) -> None:
    """Refuse a run before any work: unknown ``methods`` (named as ``kind``), no seed, or a ``topn``
    below the protocol's largest K (``ValueError`` naming what is wrong)."""
    unknown = [m for m in methods if m not in valid]
    if unknown:
        raise ValueError(f"unknown {kind} {unknown}; valid: {list(valid)}")
    if not seeds:
        raise ValueError("seeds must not be empty")
    if topn < protocol.max_k:
        raise ValueError(f"topn ({topn}) must be >= the largest K ({protocol.max_k})")


def m2grl_model_dir(workdir: Path, method: str, seed: int) -> Path:
    """Where :func:`m2grl_fitter` writes the model folder of ``method`` and ``seed``."""
    return Path(workdir) / f"{method}-seed{seed}"


def m2grl_fitter(dataset_dir: Path, method: str, seed: int, workdir: Path) -> ItemModel:
    """Train one M2GRL variant (:data:`M2GRL_VARIANTS`) with ``offline.jobs.train.train_m2grl`` and return its
    instance-view vectors scored as its config says."""
    reuse = method in SERVED_FROM_M2GRL
    # a served-from-m2grl variant trains (when it must) the m2grl model itself, not a copy with its exponent
    changes: dict[str, Any] = {"seed": seed, **({} if reuse else M2GRL_VARIANTS[method])}
    if method == "m2grl-single-view":
        changes["views"] = tuple(views_of(dataset_dir)[:1])
    config = M2GRLConfig(**changes)
    out = m2grl_model_dir(workdir, "m2grl" if reuse else method, seed)
    if not model_trained_on(out, config.to_dict(), m2grl_inputs(dataset_dir, config)):
        out = train_m2grl(dataset_dir, out, config, overwrite=True)
    return served_m2grl(Path(out), views_of(dataset_dir)[0], served_exponent(method, config.norm_exponent))


def m2grl_inputs(dataset_dir: Path, config: M2GRLConfig) -> str:
    """The checksum of what ``train_m2grl`` reads of ``dataset_dir`` under ``config``."""
    views, relations = select_views(config, *dataset_views(dataset_dir))
    return dataset_checksum(dataset_dir, views, relations, walks=config.walks)


def served_m2grl(model_dir: Path, item_view: str, norm_exponent: float) -> ItemModel:
    """The instance-view vectors of a model folder as the index serves them (``e / |e|^a``)."""
    from index.inputs import norm_scaled

    vectors = np.load(ModelLayout(model_dir).embeddings(item_view)).astype(np.float32)
    return ItemModel(vectors=norm_scaled(vectors, norm_exponent), metric="ip")


def views_of(dataset_dir: Path) -> list[str]:
    return list(DatasetManifest.read(dataset_dir).views)


def _validation_mix(
    held_outs: Sequence[Path], seed: int, workdir: Path, protocol: ProtocolConfig, m2grl_fit: M2GRLFitter
) -> dict[str, float]:
    """The served mix chosen for ``seed`` on the held-out periods ``held_outs`` (the validation split
    first), their models in ``workdir``."""
    models = [
        (h, m2grl_fit(h, "m2grl", seed, workdir if i == 0 else workdir / f"period{i + 1}"))
        for i, h in enumerate(held_outs)
    ]
    mix, rows = validation_mix(models, protocol)
    log.info("served mix for seed %d chosen on validation: %s (of %d)", seed, mix_text(mix), len(rows))
    return mix


def _record(
    results: dict[str, Any], method: str, seed: int, scores: dict[str, float], fit_s: float, eval_s: float
) -> None:
    entry = results.setdefault(method, {"seeds": {}, "fit_seconds_all": [], "eval_seconds_all": []})
    entry["seeds"][seed] = scores
    entry["fit_seconds_all"].append(fit_s)
    entry["eval_seconds_all"].append(eval_s)
    log.info(
        "%s seed %d: HitRate@50=%.4f (fit %.1fs)", method, seed, scores.get("HitRate@50", float("nan")), fit_s
    )


def _scored(
    data: EvalData, retriever: Retriever, protocol: ProtocolConfig, k: int
) -> tuple[dict[str, float], dict[str, Float64Array]]:
    """Every metric of the protocol for ``retriever``'s general mode, and its per-user figures at ``k``."""
    ids, _ = retrieve(retriever, data, "general", protocol)
    return score_candidates(data, ids, protocol), per_user_scores(data, ids, k)


def paired_rows(
    per_user: Mapping[str, Mapping[int, Mapping[str, Float64Array]]], reference: str
) -> dict[str, dict[str, list[float]]]:
    """Every other method against ``reference`` over the same test users: per metric, ``[reference minus
    method, 95% half-width]`` (:func:`~offline.evaluation.metrics.paired_difference`), each user's figure
    first averaged over the seeds the method ran."""

    def averaged(method: str) -> dict[str, Float64Array]:
        runs = list(per_user[method].values())
        return {metric: np.mean([run[metric] for run in runs], axis=0) for metric in runs[0]}

    ref = averaged(reference)
    return {
        method: {metric: list(paired_difference(ref[metric], mine[metric])) for metric in ref}
        for method in per_user
        if method != reference and per_user[method]
        for mine in [averaged(method)]
    }


def _summarise(per_seed: dict[int, dict[str, float]]) -> tuple[dict[str, float], dict[str, float]]:
    keys = sorted(set().union(*(d.keys() for d in per_seed.values())))
    mean = {k: float(np.mean([d[k] for d in per_seed.values() if k in d])) for k in keys}
    std = {k: float(np.std([d[k] for d in per_seed.values() if k in d])) for k in keys}
    return mean, std


def evaluate(
    dataset_dir: Path,
    output_dir: Path,
    methods: Sequence[str] | None = None,
    seeds: Sequence[int] = (0, 1, 2),
    model_dir: Path | None = None,
    *,
    protocol: ProtocolConfig | None = None,
    topn: int = 200,
    retriever_factory: RetrieverFactory = serving_retriever,
    m2grl_fit: M2GRLFitter = m2grl_fitter,
    workdir: Path | None = None,
    notes: Sequence[str] = (),
    diversity: bool = False,
    served: Mapping[str, ServedMix] | None = None,
) -> Path:
    """Fit, retrieve and score every method for every seed; write ``report.md`` + ``report.json``.

    Args:
        dataset_dir: a ``DatasetLayout`` folder (its ``test`` split is scored once per method and seed).
        output_dir: report folder (created).
        methods: names among :data:`DEFAULT_METHODS` (default: all of them).
        seeds: one fit per seed; tables show mean and std over seeds.
        model_dir: an already trained M2GRL ``ModelLayout``: ``m2grl`` (and ``m2grl-ip``, ``m2grl-norm0.75``,
            the same vectors under another norm exponent) is then read from it (one row each, no
            retraining, seeds ignored for them).
        topn: neighbours per item kept by the serving index (>= the largest K).
        served: variant name -> general-mode channel mix (``index.channels``) or :data:`VALIDATION_MIX`;
            each adds a row ``served-<variant>`` scoring that mix through ``ServingIndex.mixed_neighbours``
            over the seed's ``m2grl`` model and the dataset's channels (``index.channels.CHANNELS``; default
            :data:`DEFAULT_SERVED`; ``{}``: none). A validation mix is chosen per seed with the default
            M2GRL config trained by ``m2grl_fit`` on the validation split (also when ``model_dir`` is given);
            the report records the mix each seed served.
        diversity: also train the metric model of section 6.1 on each seed's ``m2grl`` model and add the
            diversity table (general / general+filter / diversity, ``offline.evaluation.diversity``). Needs the
            default ``m2grl_fit`` (or ``model_dir``) so that the trained model folders exist.
    Returns:
        Path of ``report.md``.
    """
    protocol = protocol or ProtocolConfig()
    methods = list(methods) if methods else list(DEFAULT_METHODS)
    check_run(methods, DEFAULT_METHODS, seeds, topn, protocol)
    dataset_dir, output_dir = Path(dataset_dir), Path(output_dir)
    workdir = Path(workdir) if workdir else output_dir / ".models"
    data = load_eval_data(dataset_dir, protocol)
    train: TrainData = load_train_data(dataset_dir)
    results: dict[str, Any] = {}
    given: dict[str, float] = {}  # method -> norm exponent, for the rows read from model_dir
    if model_dir is not None:
        trained = ModelManifest.read(model_dir).norm_exponent
        given = {m: served_exponent(m, trained) for m in ("m2grl", *SERVED_FROM_M2GRL)}
    mixes: dict[str, ServedMix] = {
        f"{SERVED_PREFIX}{v}": mix if mix == VALIDATION_MIX else check_mix(mix, f"served[{v!r}]")  # type: ignore[arg-type]
        for v, mix in (served if served is not None else DEFAULT_SERVED).items()
    }
    held_outs: list[Path] = []  # the held-out periods, prepared when a mix is chosen on them
    chosen_mixes: dict[int, dict[str, float]] = {}  # seed -> the mix chosen on validation
    served_mixes: dict[str, dict[int, str]] = {}  # row -> seed -> the mix it served
    # served rows right after the M2GRL variants, before the baselines
    ordered = (
        [m for m in methods if m in M2GRL_METHODS]
        + list(mixes)
        + [m for m in methods if m not in M2GRL_METHODS]
    )
    runs = [
        (m, s) for m in ordered for s in ((0,) if m in given or (m in mixes and "m2grl" in given) else seeds)
    ]
    channels = dataset_channels(dataset_dir, train.items, topn) if mixes else {}
    paired_k = PAIRED_K if PAIRED_K in protocol.ks else protocol.max_k
    per_user: dict[str, dict[int, dict[str, Float64Array]]] = {m: {} for m in ordered}
    for method, seed in tqdm(runs, desc="evaluate", disable=None):
        t0 = time.perf_counter()
        if method in mixes:
            m2grl = (
                served_m2grl(Path(model_dir), views_of(dataset_dir)[0], given["m2grl"])  # type: ignore[arg-type]
                if "m2grl" in given
                else m2grl_fit(dataset_dir, "m2grl", seed, workdir)
            )
            mix = mixes[method]
            if isinstance(mix, str):
                if seed not in chosen_mixes:
                    held_outs = held_outs or validation_splits(dataset_dir, workdir / "validation")
                    chosen_mixes[seed] = _validation_mix(
                        held_outs, seed, workdir / "validation", protocol, m2grl_fit
                    )
                mix = chosen_mixes[seed]
            served_mixes.setdefault(method, {})[seed] = mix_text(mix)
            fit_s = time.perf_counter() - t0
            t1 = time.perf_counter()
            retriever = mixed_retriever(train.items, train.attributes, m2grl, channels, mix, topn)
            scores, per_user[method][seed] = _scored(data, retriever, protocol, paired_k)
            _record(results, method, seed, scores, fit_s, time.perf_counter() - t1)
            continue
        if method in given:
            model = served_m2grl(Path(model_dir), views_of(dataset_dir)[0], given[method])  # type: ignore[arg-type]
        elif method in M2GRL_METHODS:
            model = m2grl_fit(dataset_dir, method, seed, workdir)
        else:
            model = fit_baseline(method, train, seed=seed)
        fit_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        retriever = retriever_factory(train.items, train.attributes, model, topn)
        scores, per_user[method][seed] = _scored(data, retriever, protocol, paired_k)
        _record(results, method, seed, scores, fit_s, time.perf_counter() - t1)
    diversity_report = None
    if diversity:
        if "m2grl" not in methods:
            raise ValueError("diversity=True needs the 'm2grl' method (the metric model is trained on it)")
        model_dirs = (
            {0: Path(model_dir)}
            if model_dir is not None
            else {s: m2grl_model_dir(workdir, "m2grl", s) for s in seeds}
        )
        # the same protocol options as table 2 (exclude_seen drops seen items from the candidates too)
        div_protocol = protocol.replace(ks=(50,))
        diversity_report = evaluate_diversity(
            dataset_dir, model_dirs, workdir, data, config=div_protocol, topn=topn
        )
    for entry in results.values():
        entry["mean"], entry["std"] = _summarise(entry["seeds"])
        entry["fit_seconds"] = float(np.mean(entry["fit_seconds_all"]))
        entry["eval_seconds"] = float(np.mean(entry["eval_seconds_all"]))
    manifest = DatasetManifest.read(dataset_dir)
    report = {
        "dataset": manifest.name or dataset_dir.name,
        "dataset_target": manifest.target,
        "protocol": {**protocol.__dict__, "ks": list(protocol.ks), "topn": topn},
        "protocol_text": (
            f"full-catalogue item-to-item retrieval; trigger = last {protocol.n_triggers} train item(s)"
            f"{' merged by score' if protocol.n_triggers > 1 else ''}; ground truth = distinct test items"
            f"{' minus seen items' if protocol.exclude_seen else ''}; discovery window {protocol.recent_days:g} days."
        ),
        "users": data.n_users,
        "discovery_users": int((np.diff(data.new_truth_indptr) > 0).sum()),
        "truth_in_trigger_category": data.truth_trigger_category_share(),
        "catalogue": len(data.catalogue),
        "seeds": list(seeds),
        "methods": results,
        "method_order": list(results),
        "served_mixes": served_mixes,
        "notes": list(notes),
    }
    reference = next((m for m in ordered if m in mixes), "m2grl" if "m2grl" in methods else None)
    if reference is not None and data.n_users >= 2:
        report["paired"] = {"reference": reference, "k": paired_k, "rows": paired_rows(per_user, reference)}
    if diversity_report is not None:
        report["diversity"] = diversity_report
    output_dir.mkdir(parents=True, exist_ok=True)
    return write_report(report, output_dir)
