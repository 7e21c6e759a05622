"""``evaluate_cold(...)``: the cold-item protocol (``offline.evaluation.cold``) over a dataset and a model.

Methods (:data:`COLD_METHODS`), each one list per test user over the whole catalogue:

- ``m2grl-recent-mean``, ``m2grl-group-mean``, ``m2grl-side-ridge``: the model's warm item vectors plus
  the cold items placed by that rule (``model.cold``; ``recent-mean`` at ``build-index``'s default
  decay), served as the index serves the model (``e / |e|^a``, its norm exponent).
- ``m2grl-warm-only``: the model's warm items alone (what the service answers today; no cold hit).
- ``popularity-in-category``, ``random-in-category``: ``offline.baselines.in_category``.
- ``eges-cold``: EGES trained on the dataset; cold items take its cold-start rule, the mean of their
  side-information vectors (``Eges.side_only``).

Tune on a ``target="valid"`` dataset; ``python -m offline.evaluation.cold_job`` runs it from a shell.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from core.atomic import atomic_write_bytes, atomic_write_json
from core.catalogue import read_catalogue
from core.layout import DatasetLayout
from core.manifests import DatasetManifest
from core.vocab import lookup
from index.inputs import norm_scaled
from index.serving import ServingIndex
from model.artifact import M2GRLArtifact
from model.cold import model_inputs, place_cold
from offline.baselines.base import load_train_data
from offline.baselines.eges import train_eges
from offline.baselines.in_category import popularity_in_category, random_in_category
from offline.evaluation.cold import PARTS, ColdCatalogue, cold_catalogue, cold_share, score_parts
from offline.evaluation.config import ProtocolConfig
from offline.evaluation.job import check_run, load_eval_data
from offline.evaluation.protocol import EvalData, Retriever, retrieve
from offline.jobs.cold_items import DEFAULT_COLD_DECAY, warm_weights

COLD_METHODS = (
    "m2grl-recent-mean",
    "m2grl-group-mean",
    "m2grl-side-ridge",
    "m2grl-warm-only",
    "popularity-in-category",
    "random-in-category",
    "eges-cold",
)
SEEDED = ("random-in-category", "eges-cold")


@dataclasses.dataclass(frozen=True)
class ColdRun:
    """What every method reads: the dataset folder, its catalogue rows, the protocol data, the model."""

    dataset_dir: Path
    rows: ColdCatalogue
    data: EvalData
    model: M2GRLArtifact
    topn: int
    ridge_l2: float
    decay: float = DEFAULT_COLD_DECAY


def _vectors_retriever(run: ColdRun, items: np.ndarray, vectors: np.ndarray, exponent: float) -> Retriever:
    attributes = {v: a[: len(items)] for v, a in run.rows.attributes.items()}
    served = norm_scaled(np.ascontiguousarray(vectors, dtype=np.float32), exponent)
    return ServingIndex.from_vectors(
        items, attributes, vectors={"general": served}, metrics={"general": "ip"}, topn=run.topn
    )


def _m2grl_placed(run: ColdRun, rule: str, **options: Any) -> tuple[Retriever, dict[str, Any]]:
    """The model's warm vectors and its cold items placed by ``rule``; notes count the cold items per
    number of side views that placed them (``matched``: index 0 = the global fallback)."""
    weights = warm_weights(rule, DatasetLayout(run.dataset_dir), run.rows.items[: run.rows.n_warm], run.decay)
    inputs = model_inputs(run.model, run.rows.cold_attributes(), warm_weights=weights)
    placed = place_cold(rule, inputs, **options)
    warm = np.asarray(run.model.embeddings[run.model.views[0]], dtype=np.float32)
    vectors = np.concatenate([warm, placed.vectors])
    matched = np.bincount(placed.matched, minlength=len(inputs.views) + 1).tolist()
    return _vectors_retriever(run, run.rows.items, vectors, run.model.manifest.norm_exponent), {
        "matched": matched
    }


def _recent_mean(run: ColdRun, seed: int) -> tuple[Retriever, dict[str, Any]]:
    del seed  # the model is given
    return _m2grl_placed(run, "recent-mean")


def _group_mean(run: ColdRun, seed: int) -> tuple[Retriever, dict[str, Any]]:
    del seed
    return _m2grl_placed(run, "group-mean")


def _side_ridge(run: ColdRun, seed: int) -> tuple[Retriever, dict[str, Any]]:
    del seed
    return _m2grl_placed(run, "side-ridge", l2=run.ridge_l2)


def _warm_only(run: ColdRun, seed: int) -> tuple[Retriever, dict[str, Any]]:
    del seed
    warm = np.asarray(run.model.embeddings[run.model.views[0]], dtype=np.float32)
    return _vectors_retriever(
        run, run.rows.items[: run.rows.n_warm], warm, run.model.manifest.norm_exponent
    ), {}


def _map_retriever(run: ColdRun, ids: np.ndarray, scores: np.ndarray) -> Retriever:
    return ServingIndex.from_topn(run.rows.items, run.rows.attributes, {"general": ids}, {"general": scores})


def _category(run: ColdRun) -> np.ndarray:
    views = list(run.rows.attributes)
    return run.rows.attributes[views[0]] if views else np.full(len(run.rows.items), -1, dtype=np.int64)


def _popularity(run: ColdRun, seed: int) -> tuple[Retriever, dict[str, Any]]:
    del seed
    model = popularity_in_category(run.rows.counts, _category(run), run.topn)
    assert model.topn_ids is not None and model.topn_scores is not None  # a map model by construction
    return _map_retriever(run, model.topn_ids, model.topn_scores), {}


def _random(run: ColdRun, seed: int) -> tuple[Retriever, dict[str, Any]]:
    model = random_in_category(_category(run), run.topn, seed=seed)
    assert model.topn_ids is not None and model.topn_scores is not None  # a map model by construction
    return _map_retriever(run, model.topn_ids, model.topn_scores), {}


def _eges(run: ColdRun, seed: int) -> tuple[Retriever, dict[str, Any]]:
    train = load_train_data(run.dataset_dir)
    if not np.array_equal(train.items, run.rows.items[: run.rows.n_warm]):
        raise ValueError("eges-cold: the dataset's vocabulary differs from the model's")
    eges = train_eges(train, seed=seed)
    layout = DatasetLayout(run.dataset_dir)
    cold_side = {}
    for view in eges.views:
        sizes = int(train.side[view].max()) + 1 if len(train.side[view]) else 0
        rows = lookup(run.rows.cold_attributes()[view], np.load(layout.vocab(view)).astype(np.int64))
        cold_side[view] = np.where(rows < sizes, rows, -1)
    vectors = np.concatenate([eges.vectors(), eges.side_only(cold_side)])
    return _vectors_retriever(run, run.rows.items, vectors, 0.0), {}


#: method -> ``(run, seed) -> (retriever, notes)``
BUILDERS: dict[str, Callable[[ColdRun, int], tuple[Retriever, dict[str, Any]]]] = {
    "m2grl-recent-mean": _recent_mean,
    "m2grl-group-mean": _group_mean,
    "m2grl-side-ridge": _side_ridge,
    "m2grl-warm-only": _warm_only,
    "popularity-in-category": _popularity,
    "random-in-category": _random,
    "eges-cold": _eges,
}


def prepare_cold_run(
    dataset_dir: Path, model_dir: Path, protocol: ProtocolConfig, *, topn: int = 200, ridge_l2: float = 1.0
) -> ColdRun:
    """Read the dataset (events, catalogue) and the model; raises ``ValueError`` when the dataset has no
    catalogue or the model was trained on another vocabulary."""
    layout = DatasetLayout(Path(dataset_dir))
    catalogue = read_catalogue(layout.catalogue)
    if catalogue is None:
        raise ValueError(f"{layout.catalogue} is missing: prepare the dataset again to write its catalogue")
    model = M2GRLArtifact.load(Path(model_dir))
    item_view = model.views[0]
    vocab = np.load(layout.vocab(item_view))
    if not np.array_equal(vocab, model.vocab[item_view]):
        raise ValueError(f"{model_dir} was trained on another item vocabulary than {dataset_dir}'s")
    rows = cold_catalogue(vocab, np.load(layout.vocab_counts(item_view)), catalogue)
    data = dataclasses.replace(load_eval_data(layout.root, protocol), catalogue=rows.items)
    return ColdRun(layout.root, rows, data, model, topn, ridge_l2)


def evaluate_cold(
    dataset_dir: Path,
    model_dir: Path,
    methods: Sequence[str] = COLD_METHODS,
    seeds: Sequence[int] = (0,),
    *,
    protocol: ProtocolConfig | None = None,
    topn: int = 200,
    ridge_l2: float = 1.0,
) -> dict[str, Any]:
    """Run the cold-item protocol; returns a JSON-ready report ``{"methods": {method: {"seeds": {seed:
    {part: {metric: value}}}, "mean": {part: {...}}, "notes": {...}, "seconds": float}}, ...}`` with
    ``part`` in :data:`offline.evaluation.cold.PARTS` and ``"lists"`` (``ColdShare@k``). Unseeded methods run once (seed ``seeds[0]``)."""
    protocol = protocol or ProtocolConfig(ks=(20, 50, 100))
    check_run(methods, list(BUILDERS), seeds, topn, protocol, kind="cold methods")
    run = prepare_cold_run(dataset_dir, model_dir, protocol, topn=topn, ridge_l2=ridge_l2)
    results: dict[str, Any] = {}
    for method in methods:
        entry: dict[str, Any] = {"seeds": {}, "notes": {}, "seconds": 0.0}
        for seed in seeds if method in SEEDED else seeds[:1]:
            start = time.perf_counter()
            retriever, notes = BUILDERS[method](run, seed)
            ids, _ = retrieve(retriever, run.data, "general", protocol)
            entry["seeds"][seed] = score_parts(run.data, ids, protocol) | {
                "lists": cold_share(ids, run.rows.items[run.rows.n_warm :], protocol.ks)
            }
            entry["notes"] = notes
            entry["seconds"] += time.perf_counter() - start
        entry["mean"] = _mean(entry["seeds"])
        results[method] = entry
    parts = score_parts(run.data, np.full((run.data.n_users, protocol.max_k), -1, dtype=np.int64), protocol)
    return {
        "dataset": str(Path(dataset_dir)),
        "dataset_target": DatasetManifest.read(dataset_dir).target,
        "model": str(Path(model_dir)),
        "catalogue": {"warm": run.rows.n_warm, "cold": run.rows.n_cold},
        "users": {part: int(parts[part]["users"]) for part in parts},
        "protocol": {"ks": list(protocol.ks), "topn": topn, "ridge_l2": ridge_l2},
        "seeds": list(seeds),
        "methods": results,
    }


def _mean(per_seed: Mapping[int, Mapping[str, Mapping[str, float]]]) -> dict[str, dict[str, float]]:
    first = next(iter(per_seed.values()))
    return {
        part: {m: float(np.mean([s[part][m] for s in per_seed.values()])) for m in first[part]}
        for part in first
    }


def report_markdown(report: Mapping[str, Any], k: int = 50) -> str:
    """One table: HitRate@k and Recall@k (percent) on the cold, warm and whole ground truth per method."""
    users = report["users"]
    lines = [
        f"# Cold items: {report['dataset']} (target {report['dataset_target']})",
        "",
        f"Catalogue: {report['catalogue']['warm']:,} warm + {report['catalogue']['cold']:,} cold items; "
        f"users with cold / warm / any ground truth: {users.get('cold', 0)} / {users.get('warm', 0)} / "
        f"{users.get('all', 0)}; seeds {report['seeds']} (mean).",
        "",
        "| method | " + " | ".join(f"{p} HR@{k} | {p} R@{k}" for p in PARTS) + f" | cold share@{k} | notes |",
        "|---|" + "---:|" * (2 * len(PARTS) + 1) + "---|",
    ]
    for method, entry in report["methods"].items():
        cells = []
        for part in PARTS:
            scores = entry["mean"].get(part, {})
            for metric in (f"HitRate@{k}", f"Recall@{k}"):
                cells.append(f"{100 * scores[metric]:.2f}" if metric in scores else "n/a")
        share = entry["mean"].get("lists", {}).get(f"ColdShare@{k}")
        cells.append(f"{100 * share:.2f}" if share is not None else "n/a")
        notes = ", ".join(f"{key} {value}" for key, value in entry["notes"].items())
        lines.append(f"| {method} | " + " | ".join(cells) + f" | {notes} |")
    return "\n".join(lines) + "\n"


def write_cold_report(report: Mapping[str, Any], output_dir: Path, k: int = 50) -> Path:
    """Write ``cold.json`` and ``cold.md`` under ``output_dir``; returns the Markdown path."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(output_dir / "cold.json", report)
    path = output_dir / "cold.md"
    atomic_write_bytes(path, report_markdown(report, k).encode())
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m offline.evaluation.cold_job --dataset D --model M --output R``."""
    parser = argparse.ArgumentParser(description="Cold-item protocol over a dataset's whole catalogue.")
    parser.add_argument("--dataset", type=Path, required=True, help="dataset folder (m2grl prepare)")
    parser.add_argument("--model", type=Path, required=True, help="M2GRL model folder trained on it")
    parser.add_argument("--output", type=Path, required=True, help="report folder (cold.md, cold.json)")
    parser.add_argument("--methods", default=",".join(COLD_METHODS), help="comma-separated methods")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds (seeded methods)")
    parser.add_argument("--ridge-l2", type=float, default=1.0, help="ridge penalty of m2grl-side-ridge")
    parser.add_argument("--ks", default="20,50,100", help="comma-separated cut-offs K")
    parser.add_argument("--topn", type=int, default=200, help="neighbours per item kept by the index")
    args = parser.parse_args(argv)
    ks = tuple(int(k) for k in args.ks.split(",") if k)
    report = evaluate_cold(
        args.dataset,
        args.model,
        [m for m in args.methods.split(",") if m],
        [int(s) for s in args.seeds.split(",") if s],
        protocol=ProtocolConfig(ks=ks),
        topn=args.topn,
        ridge_l2=args.ridge_l2,
    )
    shown = 50 if 50 in ks else max(ks)
    print(report_markdown(report, shown))
    print(f"written to {write_cold_report(report, args.output, shown)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
