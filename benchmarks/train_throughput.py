"""Training throughput: our trainer (item view only) vs gensim Word2Vec on the same item sequences.

For each corpus (the bundled Taobao sample, and a synthetic log from ``offline.data.synth``) the last item of
every sequence is held out; both models train on the rest with the same dim, window, negatives and
epochs (gensim: sg=1, as many workers as our threads (--threads, default 2), min_count=1, no down-sampling, as our trainer does not down-sample).
Printed per corpus and model: training tokens/s, wall time, peak RSS of the worker process and
HitRate@50 (is the held-out item among the 50 inner-product neighbours of the item before it), plus the
time per epoch of full M2GRL (item + category views and their alignment) on the same data. Our item
view runs once per learning-rate schedule (the paper's constant lr, M2GRL's default, and the opt-in
linear decay), gensim always decays linearly.

Every run happens in its own process so peak RSS is per run. Usage:

    python benchmarks/train_throughput.py [--events 10000000] [--epochs 10] [--batch-size 16384] [--prefetch 2]
        [--lr-schedules constant,linear]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import peak_rss_bytes  # noqa: E402

TAOBAO = REPO / "data" / "taobao-sample" / "UserBehavior_head_sample.csv.gz"
if not TAOBAO.exists():
    TAOBAO = Path("/work/shared/data/taobao-userbehavior-sample/UserBehavior_head_sample.csv.gz")


# ------------------------------------------------------------------------------------------- corpora


def _sequences(seq: np.ndarray, item: np.ndarray, cat: np.ndarray) -> dict[str, np.ndarray]:
    """Ragged item/category sequences (consecutive duplicates collapsed), last item of each held out."""
    item_codes, item_ids = pd.factorize(item)
    cat_codes, _ = pd.factorize(cat)
    keep = np.ones(len(item), dtype=bool)
    keep[1:] = (item_codes[1:] != item_codes[:-1]) | (seq[1:] != seq[:-1])
    seq, item_codes, cat_codes = seq[keep], item_codes[keep], cat_codes[keep]
    starts = np.concatenate([[0], np.nonzero(seq[1:] != seq[:-1])[0] + 1])
    ends = np.concatenate([starts[1:], [len(seq)]])
    long = (ends - starts) >= 3
    test_pos = ends[long] - 1
    train_mask = np.ones(len(seq), dtype=bool)
    train_mask[test_pos] = False
    new_seq = seq[train_mask]
    indptr = np.concatenate([[0], np.nonzero(new_seq[1:] != new_seq[:-1])[0] + 1, [len(new_seq)]]).astype(
        np.int64
    )
    tokens = item_codes[train_mask].astype(np.int32)
    cats = cat_codes[train_mask].astype(np.int32)
    # Category sequences: the same sessions mapped to categories, duplicates collapsed.
    ckeep = np.ones(len(cats), dtype=bool)
    ckeep[1:] = (cats[1:] != cats[:-1]) | (new_seq[1:] != new_seq[:-1])
    cseq = new_seq[ckeep]
    c_indptr = np.concatenate([[0], np.nonzero(cseq[1:] != cseq[:-1])[0] + 1, [len(cseq)]]).astype(np.int64)
    n_items = len(item_ids)
    link = np.full(n_items, -1, dtype=np.int64)
    link[item_codes] = cat_codes
    return {
        "indptr": indptr,
        "tokens": tokens,
        "cat_indptr": c_indptr,
        "cat_tokens": cats[ckeep],
        "link": link,
        "n_items": np.array(n_items),
        "n_cats": np.array(int(cat_codes.max()) + 1),
        "query": item_codes[test_pos - 1].astype(np.int64),
        "target": item_codes[test_pos].astype(np.int64),
    }


def taobao_corpus() -> dict[str, np.ndarray]:
    df = pd.read_csv(TAOBAO, header=None, names=["user", "item", "cat", "behavior", "ts"])
    df = df.sort_values(["user", "ts"], kind="stable")
    return _sequences(df["user"].to_numpy(), df["item"].to_numpy(), df["cat"].to_numpy())


def synthetic_corpus(events: int, workdir: Path) -> tuple[str, dict[str, np.ndarray]]:
    """``offline.data.synth`` when present (planted sessions), else a Zipf random-walk generator."""
    try:
        from offline.data.synth import SynthConfig, generate
    except ImportError:
        return "zipf", _zipf_corpus(events)
    out = workdir / "synth"
    generate(SynthConfig(events=events, session_ids=True, seed=0), out, progress=False)
    parts = sorted(out.glob("part-*.parquet"))
    df = pd.concat(pd.read_parquet(p, columns=["session_id", "item_id", "category_id"]) for p in parts)
    return "synth", _sequences(
        df["session_id"].to_numpy(), df["item_id"].to_numpy(), df["category_id"].to_numpy()
    )


def _zipf_corpus(
    events: int, n_items: int = 200_000, n_cats: int = 2_000, seed: int = 0
) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    seq = np.repeat(np.arange(events // 10 + 1), 10)[:events]
    cat_of_seq = np.minimum(rng.zipf(1.3, size=seq.max() + 1) - 1, n_cats - 1)
    per_cat = n_items // n_cats
    item = cat_of_seq[seq] * per_cat + np.minimum(rng.zipf(1.5, size=events) - 1, per_cat - 1)
    return _sequences(seq, item, item // per_cat)


# -------------------------------------------------------------------------------------------- models


def hit_rate(
    emb: np.ndarray, query: np.ndarray, target: np.ndarray, k: int = 50, limit: int = 20_000
) -> float:
    """Share of test cases whose target is in the top-k inner-product neighbours of the query (query excluded)."""
    rng = np.random.default_rng(0)
    if len(query) > limit:
        sel = rng.choice(len(query), limit, replace=False)
        query, target = query[sel], target[sel]
    hits = 0
    for lo in range(0, len(query), 1024):
        q = query[lo : lo + 1024]
        scores = emb[q] @ emb.T
        scores[np.arange(len(q)), q] = -np.inf
        top = np.argpartition(-scores, k, axis=1)[:, :k]
        hits += int((top == target[lo : lo + 1024, None]).any(axis=1).sum())
    return hits / max(len(query), 1)


def _peak_rss_mb() -> float:
    return peak_rss_bytes() / (1 << 20)


def run_gensim(path: str, args: dict[str, Any]) -> dict[str, Any]:
    from gensim.models import Word2Vec

    data = dict(np.load(path))
    indptr, tokens = data["indptr"], data["tokens"]
    words = tokens.astype(str)
    sentences = [words[a:b].tolist() for a, b in zip(indptr[:-1], indptr[1:], strict=True)]
    model = Word2Vec(
        vector_size=args["dim"], window=args["window"], negative=args["negatives"], sg=1, hs=0,
        min_count=1, sample=0, workers=args["threads"], seed=0,
    )  # fmt: skip
    model.build_vocab(sentences)
    t0 = time.perf_counter()
    model.train(sentences, total_examples=len(sentences), epochs=args["epochs"])
    wall = time.perf_counter() - t0
    emb = np.zeros((int(data["n_items"]), args["dim"]), dtype=np.float32)
    rows = np.array([int(w) for w in model.wv.index_to_key])
    emb[rows] = model.wv.vectors
    return {
        "wall": wall,
        "tokens": len(tokens) * args["epochs"],
        "rss": _peak_rss_mb(),
        "hr": hit_rate(emb, data["query"], data["target"]),
    }


def run_ours(path: str, args: dict[str, Any]) -> dict[str, Any]:
    from model.batches import BatchSettings, M2GRLInputs, make_batch_fn, steps_per_epoch
    from model.config import M2GRLConfig
    from model.m2grl import M2GRL
    from model.trainer import train
    from model.weighting import make_weighting

    data = dict(np.load(path))
    views = {"item": (data["indptr"], data["tokens"])}
    counts = {"item": np.bincount(data["tokens"], minlength=int(data["n_items"]))}
    relations: list[tuple[str, str]] = []
    links = {}
    if args["full"]:
        views["category"] = (data["cat_indptr"], data["cat_tokens"])
        counts["category"] = np.bincount(data["cat_tokens"], minlength=int(data["n_cats"]))
        relations = [("item", "category")]
        links = {"item-category": data["link"]}
    inputs = M2GRLInputs(views, counts, links, relations)
    settings = BatchSettings(
        window=args["window"],
        negatives=args["negatives"],
        batch_size=args["batch_size"],
        shared_negatives=args["shared"],
        prefetch=args["prefetch"],
    )
    tasks = [f"intra:{v}" for v in views] + [f"inter:{a}-{b}" for a, b in relations]
    weighting = make_weighting("adaptive", tasks, instance_task="intra:item")
    model = M2GRL(inputs.view_sizes(), relations, weighting, dim=args["dim"], negatives=args["negatives"])
    epochs = args["epochs"]
    # torch.optim's first optimiser imports torch._dynamo (~1 s, once per process): library start-up,
    # like gensim's import above, not training time
    import torch._dynamo  # noqa: F401

    # the compiled optimiser kernels: loaded from numba's disk cache (compiled once per machine,
    # about 0.7 s each), also library start-up
    from model import kernels

    kernels.warm_up()

    t0 = time.perf_counter()
    # M2GRL's optimisation defaults (row-wise Adagrad at 0.05 on the tables, Adam 0.01 on the dense part)
    config = M2GRLConfig().trainer.replace(
        epochs=epochs, threads=args["threads"], device="cpu", lr_schedule=args["lr_schedule"]
    )
    train(
        model, make_batch_fn(inputs, settings), config, progress=False,
        steps_per_epoch=steps_per_epoch(inputs, settings),
    )  # fmt: skip
    wall = time.perf_counter() - t0
    rss = _peak_rss_mb()  # before the HitRate scoring, which allocates [1024, n_items] score blocks
    hr = hit_rate(model.embeddings("item"), data["query"], data["target"])
    return {"wall": wall, "tokens": len(data["tokens"]) * epochs, "rss": rss, "hr": hr}


def _worker(fn: Any, path: str, args: dict[str, Any], queue: Any) -> None:
    queue.put(fn(path, args))


def in_process(fn: Any, path: str, args: dict[str, Any]) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_worker, args=(fn, path, args, queue))
    proc.start()
    result: dict[str, Any] = queue.get()
    proc.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=10_000_000, help="synthetic events (0: skip)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--window", type=int, default=9)
    parser.add_argument("--negatives", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=16384, help="our positive pairs per step")
    parser.add_argument("--shared", type=int, default=64, help="our shared negative pool per batch")
    parser.add_argument(
        "--lr-schedules", default="constant,linear",
        help="ours (item view): one row per schedule (TrainerConfig.lr_schedule); full M2GRL: M2GRLConfig's default",
    )  # fmt: skip
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--prefetch", type=int, default=0, help="our batches built ahead by a background thread (0: none)"
    )
    ns = parser.parse_args()
    from model.config import M2GRLConfig

    keys = ("epochs", "dim", "window", "negatives", "batch_size", "shared", "threads", "prefetch")
    args = {k: getattr(ns, k) for k in keys}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        corpora = [("taobao", taobao_corpus())]
        if ns.events > 0:
            corpora.append(synthetic_corpus(ns.events, Path(tmp)))
        for name, corpus in corpora:
            path = str(Path(tmp) / f"{name}.npz")
            np.savez(path, **corpus)  # type: ignore[arg-type]  # numpy stubs read the first kwarg as allow_pickle
            n_tok = len(corpus["tokens"])
            runs: list[tuple[str, Any, dict[str, Any]]] = [("gensim", run_gensim, {})]
            runs += [
                (f"ours (item view, {sched} lr)", run_ours, {"full": False, "lr_schedule": sched})
                for sched in ns.lr_schedules.split(",")
            ]
            runs.append(
                (
                    "ours (full M2GRL)",
                    run_ours,
                    {"full": True, "lr_schedule": M2GRLConfig().trainer.lr_schedule},
                )
            )
            for label, fn, extra in runs:
                res = in_process(fn, path, {**args, **extra})
                rows.append(
                    {
                        "corpus": f"{name} ({n_tok:,} train tokens, {int(corpus['n_items']):,} items)",
                        "model": label,
                        "tokens/s": f"{res['tokens'] / res['wall']:,.0f}",
                        "wall s": f"{res['wall']:.1f}",
                        "s/epoch": f"{res['wall'] / ns.epochs:.2f}",
                        "peak RSS MB": f"{res['rss']:.0f}",
                        "HitRate@50": f"{res['hr']:.4f}",
                    }
                )
                print(rows[-1], flush=True)
    print()
    print(f"epochs={ns.epochs} dim={ns.dim} window={ns.window} negatives={ns.negatives} batch={ns.batch_size} "
          f"shared_negatives={ns.shared} threads={ns.threads} prefetch={ns.prefetch}")  # fmt: skip
    print(
        pd.DataFrame(rows).to_markdown(index=False)
        if _has_tabulate()
        else pd.DataFrame(rows).to_string(index=False)
    )


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return False
    return True


if __name__ == "__main__":
    main()
