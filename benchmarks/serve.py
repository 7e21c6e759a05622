"""Serving benchmark: the real service under uvicorn (1 and 2 workers) on loopback, driven by
``wrk``, next to a bare FastAPI endpoint returning a constant list, measured in the same run.

Indexes:
- ``movielens``: the real MovieLens catalogue (movie ids, first genre as category) from the bundled
  data with *random* 32-d vectors (the trained model is another stage's output), built by
  ``index.build.build_index`` (flat FAISS, top-200 map);
- ``synthetic-1M``: 1,000,000 items, 1,000 categories, a random top-60 map and flat FAISS indexes,
  written directly as an ``IndexVersionLayout`` (computing a real top-N map for 1M items takes far
  longer than a benchmark should on 2 cores).

Both hold a random co-occurrence channel and a random shared popular list beside the general mode and
serve the builder's default mix (``offline.jobs.channels.DEFAULT_MIX``) in general mode, so general-mode
rows measure the channel merge.

Runs: max throughput (``wrk -t2 -c32``) per index, mode and worker count; then a fixed-rate run at
1,000 req/s: wrk with a Lua ``delay()`` that books one slot every 2 ms per wrk thread (2 threads,
8 connections each), schedule-based so a slow answer does not lower the offered rate. Latency is
wrk's (send to last byte). The client shares the 2 cores with the server, so throughput numbers
are relative: compare the service to the bare endpoint of the same run.

    python benchmarks/serve.py [--duration 8] [--workers 1 2] [--items 1000000] [--skip-large] [--rounds 1]

With ``--rounds R`` the bare endpoint and the service alternate R times per worker count and the
median of the per-round ratios is printed: on a shared VM the reference alone moves by +-10 points
between runs.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import faiss
import httpx
import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
# the repository root first, so that the packages win over same-named scripts here
sys.path.insert(0, str(REPO))

from core.atomic import atomic_write_json  # noqa: E402
from core.layout import IndexRoot, IndexVersionLayout, MetricLayout, ModelLayout  # noqa: E402
from core.manifests import INDEX_FORMAT, IndexManifest  # noqa: E402
from index.build import DIVERSITY_EXCLUDES, build_index, write_channel, write_fused  # noqa: E402
from index.config import IndexConfig  # noqa: E402
from index.inputs import ChannelInput  # noqa: E402
from index.manifest import describe_files  # noqa: E402
from index.publish import publish  # noqa: E402
from index.topn import drop_own_group_in_place  # noqa: E402
from offline.jobs.channels import DEFAULT_MIX  # noqa: E402
from tests.net import free_port  # noqa: E402

MOVIES = Path(os.environ.get("M2GRL_BENCH_MOVIES", "/work/shared/data/ml-latest-small/movies.csv"))
FALLBACK_MOVIES = REPO / "data" / "movielens-small" / "movies.csv"


@dataclass(frozen=True)
class Result:
    target: str
    workers: int
    mode: str
    rate: str
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    round: int = 0


# ---------------------------------------------------------------------------------------------- indexes


def movielens_catalogue() -> tuple[np.ndarray, np.ndarray]:
    """Movie ids and a category per movie (its first genre, factorised)."""
    path = MOVIES if MOVIES.is_file() else FALLBACK_MOVIES
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    ids = np.array([int(r["movieId"]) for r in rows], dtype=np.int64)
    genres = [r["genres"].split("|")[0] for r in rows]
    _, cats = np.unique(genres, return_inverse=True)
    return ids, cats.astype(np.int64)


def build_movielens(root: Path, work: Path) -> np.ndarray:
    ids, cats = movielens_catalogue()
    rng = np.random.default_rng(0)
    model = ModelLayout(work / "model")
    for p in (model.embeddings("item"), model.vocab("item"), model.attributes("category")):
        p.parent.mkdir(parents=True, exist_ok=True)
    np.save(model.embeddings("item"), rng.normal(size=(len(ids), 32)).astype(np.float32))
    np.save(model.vocab("item"), ids)
    np.save(model.attributes("category"), cats)
    atomic_write_json(model.manifest, {"version": "bench-random", "views": ["item", "category"]})
    metric = MetricLayout(work / "metric")
    metric.root.mkdir(parents=True, exist_ok=True)
    np.save(metric.diversity, rng.normal(size=(len(ids), 16)).astype(np.float32))
    atomic_write_json(
        metric.manifest, {"version": "bench-random"}
    )  # build-index refuses one without a manifest
    config = IndexConfig(index_type="flat", topn=200, device="cpu", recall_queries=100)
    build_index(
        model.root, root, config, metric_dir=metric.root, version="ml", progress=False,
        channels=random_channels(len(ids), 200, rng), default_mix=DEFAULT_MIX,
    )  # fmt: skip
    return ids


def random_channels(n: int, topn: int, rng: np.random.Generator) -> dict[str, ChannelInput]:
    """The co-occurrence map and the shared popular list of the default mix, random (the served cost does
    not depend on which neighbours)."""
    ids = rng.integers(0, n, (n, topn), dtype=np.int32)
    ids[ids == np.arange(n, dtype=np.int32)[:, None]] = -1  # an item never lists itself
    scores = -np.sort(-rng.random((n, topn), dtype=np.float32), axis=1)
    popular = rng.choice(n, min(n, topn), replace=False).astype(np.int32)[None, :]
    return {
        "cooc": ChannelInput(ids, scores, "random"),
        "popular": ChannelInput(popular, -np.sort(-rng.random(popular.shape, dtype=np.float32)), "random"),
    }


def write_synthetic(root: Path, n: int, topn: int = 60, seed: int = 0) -> np.ndarray:
    """A valid index version of ``n`` items written directly (random map, flat FAISS per mode; the
    diversity map without each item's own category, as ``index.build`` writes it)."""
    rng = np.random.default_rng(seed)
    layout = IndexVersionLayout(IndexRoot(root).version("synthetic").root)
    layout.attributes("category").parent.mkdir(parents=True, exist_ok=True)
    items = np.arange(1, n + 1, dtype=np.int64) * 7
    np.save(layout.items, items)
    categories = rng.integers(0, 1000, n).astype(np.int64)
    np.save(layout.attributes(DIVERSITY_EXCLUDES), categories)
    modes = {}
    for mode, metric, dim in (("general", "ip", 16), ("diversity", "l2", 8)):
        layout.faiss_index(mode).parent.mkdir(parents=True, exist_ok=True)
        x = rng.normal(size=(n, dim)).astype(np.float32)
        index = faiss.IndexFlatIP(dim) if metric == "ip" else faiss.IndexFlatL2(dim)
        index.add(x)
        faiss.write_index(index, str(layout.faiss_index(mode)))
        ids = rng.integers(0, n, (n, topn), dtype=np.int32)
        scores = (1 - np.sort(rng.random((n, topn), dtype=np.float32), axis=1)).astype(np.float16)
        modes[mode] = {"metric": metric, "dim": dim, "topn": topn, "index_type": "flat"}
        if mode == "diversity":
            drop_own_group_in_place(ids, scores, categories)
            modes[mode]["excludes_own"] = DIVERSITY_EXCLUDES
        np.save(layout.topn_ids(mode), ids)
        np.save(layout.topn_scores(mode), scores)
    channels = {name: write_channel(layout, name, c) for name, c in random_channels(n, topn, rng).items()}
    fused = write_fused(layout, DEFAULT_MIX, topn, progress=True)
    IndexManifest(
        format=INDEX_FORMAT,
        version="synthetic",
        built_at=datetime.now(UTC).isoformat(),
        num_items=n,
        attribute_views=["category"],
        modes=modes,
        channels=channels,
        default_mix=DEFAULT_MIX,
        fused=fused,
        model_version="synthetic",
        files=describe_files(layout.root),
    ).write(layout.manifest)
    layout.complete_marker.write_text("synthetic\n")
    publish(root, "synthetic")
    return items


# ---------------------------------------------------------------------------------------------- servers


@contextlib.contextmanager
def uvicorn_server(app: str, workers: int, env_extra: dict[str, str], ready_path: str) -> Iterator[str]:
    port = free_port()
    env = {**os.environ, **env_extra, "PYTHONPATH": f"{REPO}:{HERE}"}
    if workers > 1:
        env["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="bench-prom-")
    cmd = [sys.executable, "-m", "uvicorn", app, "--factory", "--host", "127.0.0.1", "--port", str(port),
           "--workers", str(workers), "--no-access-log", "--log-level", "warning"]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{app} exited with {proc.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(base + ready_path, timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise TimeoutError(f"{app} not ready")
            time.sleep(0.2)
        yield base
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


# ---------------------------------------------------------------------------------------------- wrk

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if m is None:
        raise ValueError(f"unparsable wrk latency {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def run_wrk(
    base: str, path: str, query: str, ids_file: Path, duration: int, *, connections: int = 32,
    interval_ms: float = 0.0,
) -> tuple[float, float, float, int]:  # fmt: skip
    """Requests/s, p50 and p99 (ms), and errors (socket errors + non-2xx) of one wrk run."""
    env = {**os.environ, "BENCH_PATH": path, "BENCH_QUERY": query, "BENCH_IDS_FILE": str(ids_file),
           "BENCH_INTERVAL_MS": str(interval_ms)}  # fmt: skip
    cmd = ["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "--latency", "-s", str(HERE / "wrk_items.lua"),
           base]  # fmt: skip
    out = subprocess.run(
        cmd, env=env, capture_output=True, text=True, check=True, timeout=duration + 60
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"\s50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"\s99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    m = re.search(r"BENCH errors=(\d+) non2xx=(\d+)", out)
    errors = int(m.group(1)) + int(m.group(2)) if m else -1
    return rps, p50, p99, errors


def require_wrk() -> None:
    if shutil.which("wrk") is None:
        print("wrk missing: installing it with apt-get", file=sys.stderr)
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True)


# ---------------------------------------------------------------------------------------------- main


def bench_target(
    label: str, index_root: Path, ids: np.ndarray, workers: int, duration: int, work: Path,
    fixed_rate: bool, results: list[Result], rnd: int = 0,
) -> None:  # fmt: skip
    ids_file = work / f"{label}-ids.txt"
    np.savetxt(ids_file, ids[np.random.default_rng(1).choice(len(ids), min(len(ids), 20000))], fmt="%d")
    env = {"M2GRL_INDEX_ROOT": str(index_root), "M2GRL_RELOAD_POLL_S": "60"}
    with uvicorn_server("app.main:create_app", workers, env, "/readyz") as base:
        for mode in ("general", "diversity"):
            query = f"mode={mode}&k=50"
            run_wrk(base, "/i2i", query, ids_file, 2)  # warm-up (page cache, FAISS, code paths)
            rps, p50, p99, err = run_wrk(base, "/i2i", query, ids_file, duration)
            results.append(Result(label, workers, mode, "max", rps, p50, p99, err, rnd))
            print(results[-1], flush=True)
            if fixed_rate:
                rps, p50, p99, err = run_wrk(
                    base, "/i2i", query, ids_file, duration, connections=16, interval_ms=2.0
                )
                results.append(Result(label, workers, mode, "1000/s", rps, p50, p99, err, rnd))
                print(results[-1], flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=8, help="Seconds per wrk run.")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="uvicorn worker counts.")
    parser.add_argument("--items", type=int, default=1_000_000, help="Items of the synthetic index.")
    parser.add_argument("--skip-large", action="store_true", help="Only the MovieLens index.")
    parser.add_argument(
        "--rounds", type=int, default=1,
        help="Rounds of reference then service per worker count; above 1, the median ratio is printed too.",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error(f"--rounds: must be at least 1, got {args.rounds}")
    require_wrk()
    work = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    results: list[Result] = []
    try:
        t0 = time.perf_counter()
        ml_ids = build_movielens(work / "ml-root", work / "ml-work")
        print(f"movielens index: {len(ml_ids)} items in {time.perf_counter() - t0:.1f}s", flush=True)
        targets = [("movielens", work / "ml-root", ml_ids)]
        if not args.skip_large:
            t0 = time.perf_counter()
            big_ids = write_synthetic(work / "big-root", args.items)
            print(f"synthetic index: {args.items} items in {time.perf_counter() - t0:.1f}s", flush=True)
            targets.append((f"synthetic-{args.items // 1000}k", work / "big-root", big_ids))
        bare_ids = work / "bare-ids.txt"
        np.savetxt(bare_ids, ml_ids[:1000], fmt="%d")
        for workers in args.workers:
            # the reference and the service alternate, so that a slow spell of the machine reaches both
            for rnd in range(args.rounds):
                with uvicorn_server("bare_app:create_app", workers, {}, "/bare/1") as base:
                    run_wrk(base, "/bare", "", bare_ids, 2)
                    rps, p50, p99, err = run_wrk(base, "/bare", "", bare_ids, args.duration)
                    results.append(Result("bare FastAPI", workers, "-", "max", rps, p50, p99, err, rnd))
                    print(results[-1], flush=True)
                for label, root, ids in targets:
                    fixed_rate = workers == max(args.workers) and rnd == 0
                    bench_target(label, root, ids, workers, args.duration, work, fixed_rate, results, rnd)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print_table(results)
    if args.rounds > 1:
        print_ratios(results)


def vs_bare(results: list[Result]) -> dict[int, float]:
    """Per max-throughput row (by position in ``results``), its req/s over the bare endpoint's of the same
    worker count and round."""
    bare = {(r.workers, r.round): r.rps for r in results if r.target == "bare FastAPI"}
    return {
        i: r.rps / bare[(r.workers, r.round)]
        for i, r in enumerate(results)
        if r.rate == "max" and bare.get((r.workers, r.round))
    }


def print_table(results: list[Result]) -> None:
    ratios = vs_bare(results)
    print(f"\n{'target':<16} {'workers':>7} {'mode':<10} {'rate':<7} {'round':>5} {'req/s':>9} {'vs bare':>8} "
          f"{'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")  # fmt: skip
    for i, r in enumerate(results):
        rel = f"{ratios[i]:.0%}" if i in ratios else "-"
        print(f"{r.target:<16} {r.workers:>7} {r.mode:<10} {r.rate:<7} {r.round:>5} {r.rps:>9.0f} {rel:>8} "
              f"{r.p50_ms:>8.2f} {r.p99_ms:>8.2f} {r.errors:>7}")  # fmt: skip


def print_ratios(results: list[Result]) -> None:
    """The median over rounds of each service row's ratio to the bare endpoint of its own round."""
    ratios = vs_bare(results)
    grouped: dict[tuple[str, int, str], list[float]] = {}
    for i, ratio in ratios.items():
        r = results[i]
        if r.target != "bare FastAPI":
            grouped.setdefault((r.target, r.workers, r.mode), []).append(ratio)
    print(f"\n{'target':<16} {'workers':>7} {'mode':<10} {'median vs bare':>15} {'rounds':>30}")
    for (target, workers, mode), values in grouped.items():
        rounds = " ".join(f"{v:.0%}" for v in values)
        print(f"{target:<16} {workers:>7} {mode:<10} {float(np.median(values)):>15.0%} {rounds:>30}")


if __name__ == "__main__":
    main()
