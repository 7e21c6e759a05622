"""Warm-started daily refresh against a cold run (``train --init-from``), on a drifting synthetic log.

Day 1 is the synthetic log (``offline.data.synth``) cut at 80% of its time span, without a random 10% of
the items (they appear on day 2: a day's new items). Day 2 is the whole log (the new items and the
last sessions). Yesterday's model is trained on day 1 (not timed: it exists when the refresh runs).
On day 2's validation split, the cold run trains ``--epochs`` epochs from random rows; warm runs train
1, 2, ... epochs from yesterday's model. Reported: wall time and validation HitRate@50 / Recall@50 of
every run, the first warm run that reaches the cold run's HitRate@50 and its time against the cold
run's. Target: the same quality in at most half the time.

    python benchmarks/warm_start.py [--events 300000] [--epochs 10] [--seed 0] [--train-seed S]

``--seed`` draws the log (and, unless ``--train-seed`` is given, the training runs); ``--train-seed`` moves
only the training runs on the same log, to tell seed noise from a systematic gap.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.common import print_table  # noqa: E402
from model.config import M2GRLConfig  # noqa: E402
from offline.baselines.base import load_train_data  # noqa: E402
from offline.data.prepare import prepare_from_source  # noqa: E402
from offline.data.synth import SynthConfig, generate  # noqa: E402
from offline.evaluation.config import ProtocolConfig  # noqa: E402
from offline.evaluation.job import load_eval_data, served_m2grl  # noqa: E402
from offline.evaluation.protocol import evaluate_retriever  # noqa: E402
from offline.evaluation.retrievers import serving_retriever  # noqa: E402
from offline.jobs.train import train_m2grl  # noqa: E402

NEW_ITEM_SHARE = 0.10
DAY1_TIME_SHARE = 0.80


def drifting_logs(events: int, seed: int, work: Path) -> tuple[Path, Path, int]:
    """Day-1 and day-2 parquet logs from one synthetic log; returns their paths and the new-item count."""
    generate(SynthConfig(events=events, seed=seed), work / "synth", progress=False)
    table = pa.concat_tables(pq.read_table(p) for p in sorted((work / "synth").glob("part-*.parquet")))
    items = np.unique(table["item_id"].to_numpy())
    new = np.random.default_rng(seed).choice(items, size=int(len(items) * NEW_ITEM_SHARE), replace=False)
    ts = table["timestamp"].to_numpy()
    cut = ts.min() + DAY1_TIME_SHARE * (ts.max() - ts.min())
    day1 = table.filter(
        pc.and_(pc.less(table["timestamp"], cut), pc.invert(pc.is_in(table["item_id"], pa.array(new))))
    )
    paths = []
    for name, part in (("day1", day1), ("day2", table)):
        path = work / f"{name}.parquet"
        pq.write_table(part, path)
        paths.append(path)
    return paths[0], paths[1], len(new)


def validation_scores(dataset: Path, model: Path) -> tuple[float, float]:
    """HitRate@50 and Recall@50 of the model's served general mode on the dataset's held-out split."""
    protocol = ProtocolConfig(ks=(50,))
    data = load_eval_data(dataset, protocol)
    train = load_train_data(dataset)
    item_view = "item"
    vectors = served_m2grl(model, item_view, 1.0)
    retriever = serving_retriever(train.items, train.attributes, vectors, 200)
    scores = evaluate_retriever(data, retriever, "general", protocol)
    return scores["HitRate@50"], scores["Recall@50"]


def timed_train(dataset: Path, out: Path, config: M2GRLConfig, init_from: Path | None = None) -> float:
    t0 = time.perf_counter()
    train_m2grl(dataset, out, config, overwrite=True, progress=False, init_from=init_from)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic log (and of training)")
    parser.add_argument("--train-seed", type=int, default=None, help="seed of the training runs only")
    args = parser.parse_args(argv)
    train_seed = args.seed if args.train_seed is None else args.train_seed
    work = Path(tempfile.mkdtemp(prefix="bench-warm-"))
    try:
        day1_log, day2_log, n_new = drifting_logs(args.events, args.seed, work)
        columns = {c: c for c in ("user_id", "item_id", "timestamp", "behavior", "category_id", "shop_id")}
        day1, day2 = (
            prepare_from_source(
                "generic", log, work / name, target="valid", column_map=columns, overwrite=True
            )
            for log, name in ((day1_log, "ds1"), (day2_log, "ds2"))
        )
        config = M2GRLConfig(trainer={"epochs": args.epochs, "seed": train_seed})
        timed_train(day1, work / "model1", config)  # yesterday's model
        rows: list[list[object]] = []
        cold_s = timed_train(day2, work / "cold", config)
        cold_hr, cold_r = validation_scores(day2, work / "cold")
        rows.append(
            ["cold", args.epochs, f"{cold_s:.1f}", f"{100 * cold_hr:.2f}", f"{100 * cold_r:.2f}", "100%"]
        )
        reached = None
        for epochs in range(1, args.epochs + 1):
            out = work / f"warm{epochs}"
            warm_s = timed_train(day2, out, config.replace(epochs=epochs), init_from=work / "model1")
            hr, r = validation_scores(day2, out)
            rows.append(
                [
                    "warm from day 1",
                    epochs,
                    f"{warm_s:.1f}",
                    f"{100 * hr:.2f}",
                    f"{100 * r:.2f}",
                    f"{warm_s / cold_s:.0%}",
                ]
            )
            if hr >= cold_hr:
                reached = (epochs, warm_s)
                break
        print(
            f"\nsynthetic log: {args.events} events (seed {args.seed}), {n_new} items new on day 2 (not in day "
            f"1's model); training seed {train_seed}"
        )
        print_table(["run", "epochs", "train s", "HitRate@50 %", "Recall@50 %", "time vs cold"], rows)
        if reached is None:
            print(f"warm start did not reach the cold run's HitRate@50 within {args.epochs} epochs")
        else:
            print(f"warm start reached the cold run's HitRate@50 after {reached[0]} epoch(s): "
                  f"{reached[1]:.1f} s against {cold_s:.1f} s ({reached[1] / cold_s:.0%} of the cold run's time)")  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
