"""Calibrate ``build-index --cold-scale`` on a validation dataset, through the serving path.

For ``--cold-rule none`` and each scale S, build an index version exactly as ``m2grl build-index`` does
(cooc channel, default mix, the dataset's cold items placed by each ``--rules`` rule times S), load it as the
service does, and score its served general mode (the default mix, and the m2grl channel alone) on:

- the standard protocol (table 2: triggers and ground truth over the training vocabulary): cold items
  can only take places in the lists there, so it measures what they cost warm retrieval;
- the cold protocol (``offline.evaluation.cold``: the whole catalogue; HitRate/Recall@50 on the cold
  part of each user's ground truth, the warm part, and all of it, plus ColdShare@50).

Usage (a ``target=valid`` dataset and a model trained on it)::

    python benchmarks/cold_scale.py --dataset D --model M --work W [--scales 1.0,0.95,0.9,0.8] [--rules recent-mean]

prints one Markdown table and writes ``W/cold_scale.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from index.build import build_index  # noqa: E402
from index.config import IndexConfig  # noqa: E402
from index.serving import ServingIndex  # noqa: E402
from offline.evaluation.cold import cold_share, score_parts  # noqa: E402
from offline.evaluation.cold_job import prepare_cold_run  # noqa: E402
from offline.evaluation.config import ProtocolConfig  # noqa: E402
from offline.evaluation.job import load_eval_data  # noqa: E402
from offline.evaluation.protocol import retrieve, score_candidates  # noqa: E402
from offline.jobs.channels import DEFAULT_MIX, channels_builder  # noqa: E402
from offline.jobs.cold_items import cold_builder  # noqa: E402

K = 50
MIXES = {"served (default mix)": DEFAULT_MIX, "m2grl alone": {"m2grl": 1.0}}


@dataclasses.dataclass(frozen=True)
class Served:
    """The harness's retriever over a loaded version: every lookup through the service's own merge."""

    index: ServingIndex
    mix: dict[str, float]

    def batch_neighbours(self, item_ids: Any, mode: str, k: int) -> Any:
        return self.index.batch_neighbours(item_ids, mode, k, mix=self.mix)


def score_version(
    index: ServingIndex, dataset: Path, model: Path, protocol: ProtocolConfig
) -> dict[str, Any]:
    """Standard and cold protocol figures of one loaded version, per mix."""
    standard = load_eval_data(dataset, protocol)
    run = prepare_cold_run(dataset, model, protocol)
    cold_items = run.rows.items[run.rows.n_warm :]
    out: dict[str, Any] = {}
    for name, mix in MIXES.items():
        retriever = Served(index, dict(mix))
        std_ids, _ = retrieve(retriever, standard, "general", protocol)
        table2 = score_candidates(standard, std_ids, protocol)
        ids, _ = retrieve(retriever, run.data, "general", protocol)
        parts = score_parts(run.data, ids, protocol)
        out[name] = {
            "standard": {m: table2[f"{m}@{K}"] for m in ("HitRate", "Recall")},
            "standard_cold_share": cold_share(std_ids, cold_items, (K,))[f"ColdShare@{K}"],
            "cold": {p: {m: parts[p][f"{m}@{K}"] for m in ("HitRate", "Recall")} for p in parts},
            "cold_share": cold_share(ids, cold_items, (K,))[f"ColdShare@{K}"],
            "users": {p: int(parts[p]["users"]) for p in parts},
        }
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, required=True)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--work", type=Path, required=True, help="index root of the versions built here")
    parser.add_argument("--scales", default="1.0,0.95,0.9,0.8")
    parser.add_argument(
        "--rules", default="recent-mean", help="comma-separated cold rules, each at every scale"
    )
    parser.add_argument("--topn", type=int, default=200)
    args = parser.parse_args()
    protocol = ProtocolConfig(ks=(20, 50, 100))
    config = IndexConfig(index_type="flat", topn=args.topn, device="cpu")
    rows: dict[str, Any] = {}
    rules = [r for r in args.rules.split(",") if r]
    settings = [("none", 1.0)] + [(r, float(s)) for r in rules for s in args.scales.split(",") if s]
    for rule, scale in settings:
        label = "no cold items" if rule == "none" else f"{rule}, S = {scale:g}"
        t0 = time.perf_counter()
        version = build_index(
            args.model, args.work, config, version=f"{rule}-{scale:g}".replace(".", "_"), publish=False,
            progress=False, channels=channels_builder(args.model, args.dataset, args.topn), default_mix=DEFAULT_MIX, dataset_dir=args.dataset,
            cold=cold_builder(args.model, args.dataset, rule=rule, scale=scale),
        )  # fmt: skip
        index = ServingIndex.load(args.work / "versions" / version)
        rows[label] = score_version(index, args.dataset, args.model, protocol)
        rows[label]["num_cold"] = index.num_cold
        index.close()
        print(f"{label}: {time.perf_counter() - t0:.0f}s", file=sys.stderr)
    args.work.mkdir(parents=True, exist_ok=True)
    (args.work / "cold_scale.json").write_text(json.dumps(rows, indent=1))
    for mix in MIXES:
        print(f"\n{mix}\n")
        print(
            f"| cold items | table-2 HR@{K} | table-2 R@{K} | table-2 cold share@{K} | cold HR@{K} | cold R@{K} "
            f"| warm HR@{K} | warm R@{K} | all HR@{K} | all R@{K} | cold share@{K} |"
        )
        print("|---|" + "---:|" * 10)
        for label, row in rows.items():
            r = row[mix]
            cells = [r["standard"]["HitRate"], r["standard"]["Recall"], r["standard_cold_share"]]
            for part in ("cold", "warm", "all"):
                cells += [r["cold"][part]["HitRate"], r["cold"][part]["Recall"]]
            cells.append(r["cold_share"])
            print(f"| {label} | " + " | ".join(f"{100 * c:.2f}" for c in cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
