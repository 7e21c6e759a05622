"""Index benchmark on synthetic clustered embeddings: per index type and size, build time,
memory, single-query latency p50/p99 at k=50, batched QPS, recall@50 against exact search, and the
(extrapolated) time to build the precomputed top-200 map for every item.

The vectors have cluster structure (uniform noise would make ANN recall meaningless): a Gaussian mixture in
a 24-dimensional latent space (clusters of varying spread), projected to ``d`` dimensions with a random
linear map plus small isotropic noise, then L2-normalised (inner product = cosine, as served in mode
``general``).

Usage: ``python benchmarks/index_search.py [--quick] [--sizes 100000,1000000] [--dims 64,128]
[--types flat,hnsw,ivf_flat,ivf_pq] [--queries 1000] [--map-sample 20000] [--out reports/index_bench.md]``

Single-query latency is measured with one FAISS thread (what one service worker does); batched QPS and the
map build use every core. Numbers on the shared 2-core machine are noisy: rerun on an idle one.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from index.registry import IndexParams, get_index_type  # noqa: E402
from index.serving import ServingIndex  # noqa: E402
from index.topn import build_topn_map  # noqa: E402

K = 50
TOPN = 200
LATENT = 24


def synthetic(n: int, d: int, seed: int = 0) -> np.ndarray:
    """``n`` clustered, L2-normalised float32 vectors of dimension ``d`` (see the module docstring)."""
    rng = np.random.default_rng(seed)
    clusters = max(16, n // 500)
    centres = rng.normal(size=(clusters, LATENT)).astype(np.float32)
    spread = rng.uniform(0.2, 0.6, size=clusters).astype(np.float32)
    labels = rng.integers(0, clusters, n)
    latent = centres[labels] + rng.normal(size=(n, LATENT)).astype(np.float32) * spread[labels, None]
    projection = rng.normal(size=(LATENT, d)).astype(np.float32) / np.sqrt(LATENT)
    x = latent @ projection + rng.normal(scale=0.05, size=(n, d)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return np.ascontiguousarray(x, dtype=np.float32)


@dataclass
class Row:
    n: int
    d: int
    index_type: str
    build_s: float
    memory_mb: float
    p50_ms: float
    p99_ms: float
    qps: float
    recall: float
    map_s: float
    map_measured: int


def exact_truth(x: np.ndarray, queries: np.ndarray) -> np.ndarray:
    flat = faiss.IndexFlatIP(x.shape[1])
    flat.add(x)
    _, ids = flat.search(x[queries], K + 1)
    return ids


def recall_vs(truth: np.ndarray, got: np.ndarray, queries: np.ndarray) -> float:
    hits = 0
    for q, t, g in zip(queries, truth, got, strict=True):
        hits += len(set(t[t != q][:K].tolist()) & set(g[g != q][:K].tolist()))
    return hits / (K * len(queries))


def bench_one(
    x: np.ndarray,
    kind_name: str,
    params: IndexParams,
    queries: np.ndarray,
    truth: np.ndarray,
    map_sample: int,
) -> Row:
    n, d = x.shape
    kind = get_index_type(kind_name)
    kind.check(d, n, params)
    threads = faiss.omp_get_max_threads()
    t0 = time.perf_counter()
    index = kind.make(d, "ip", n, params)
    if not index.is_trained:
        rng = np.random.default_rng(0)
        index.train(
            x[
                np.sort(
                    rng.choice(
                        n,
                        size=min(n, max(64 * faiss.extract_index_ivf(index).nlist, 39 * 256)),
                        replace=False,
                    )
                )
            ]
        )
    index.add(x)
    build_s = time.perf_counter() - t0
    memory_mb = len(faiss.serialize_index(index)) / 2**20  # what the index holds in RAM when served
    search = kind.search_params(index, params, K + 1, False)

    def run(q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return index.search(q, k) if search is None else index.search(q, k, params=search)

    faiss.omp_set_num_threads(1)
    lat = np.empty(len(queries))
    for i, q in enumerate(queries):
        t_ns = time.perf_counter_ns()
        run(x[q : q + 1], K + 1)
        lat[i] = (time.perf_counter_ns() - t_ns) / 1e6
    faiss.omp_set_num_threads(threads)
    t = time.perf_counter()
    _, got = run(x[queries], K + 1)
    qps = len(queries) / (time.perf_counter() - t)
    recall = recall_vs(truth, got, queries)

    # precomputed map on a sample of rows, extrapolated linearly to all N rows (searches are independent)
    m = min(n, map_sample)
    map_params = kind.search_params(index, params, TOPN + 1, False)
    t = time.perf_counter()
    build_topn_map(index, x[:m], TOPN, "ip", params=map_params, batch_size=4096, progress=False)
    map_s = (time.perf_counter() - t) * n / m
    return Row(
        n,
        d,
        kind_name,
        build_s,
        memory_mb,
        float(np.percentile(lat, 50)),
        float(np.percentile(lat, 99)),
        qps,
        recall,
        map_s,
        m,
    )


def lookup_latency(n: int) -> tuple[float, float]:
    """p50 and p99 (ms) of ``ServingIndex.neighbours`` answered from a random map with a category filter."""
    rng = np.random.default_rng(1)
    ids = rng.integers(0, n, size=(n, TOPN), dtype=np.int32)
    scores = np.sort(rng.random((n, TOPN), dtype=np.float32), axis=1)[:, ::-1].astype(np.float16)
    items = np.arange(n, dtype=np.int64) * 3 + 7
    cats = {"category": rng.integers(0, 500, n).astype(np.int64)}
    serving = ServingIndex.from_topn(items, cats, {"general": ids}, {"general": scores.astype(np.float32)})
    triggers = items[rng.integers(0, n, 2000)]
    lat = np.empty(len(triggers))
    for i, item in enumerate(triggers.tolist()):
        t = time.perf_counter_ns()
        serving.neighbours(item, "general", K, exclude_categories=[1, 2, 3], exclude_items=[10, 13])
        lat[i] = (time.perf_counter_ns() - t) / 1e6
    return float(np.percentile(lat, 50)), float(np.percentile(lat, 99))


def table(rows: list[Row]) -> str:
    out = [
        "| N | d | index | build s | memory MiB | 1-query p50 ms | 1-query p99 ms | batched QPS | recall@50 | "
        "top-200 map s (est.) | map rows measured |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        out.append(
            f"| {r.n:,} | {r.d} | {r.index_type} | {r.build_s:.1f} | {r.memory_mb:.0f} | {r.p50_ms:.3f} | "
            f"{r.p99_ms:.3f} | {r.qps:,.0f} | {r.recall:.4f} | {r.map_s:.0f} | {r.map_measured:,} |"
        )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="100k items only.")
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--dims", default="64,128")
    parser.add_argument("--types", default="flat,hnsw,ivf_flat,ivf_pq")
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument(
        "--map-sample", type=int, default=20000, help="Rows of the top-200 map actually built."
    )
    parser.add_argument("--nprobe", type=int, default=32)
    parser.add_argument("--ef-search", type=int, default=128)
    parser.add_argument("--ef-construction", type=int, default=200)
    parser.add_argument("--hnsw-m", type=int, default=32)
    parser.add_argument("--threads", type=int, default=None, help="FAISS OpenMP threads (default: all).")
    parser.add_argument("--out", type=Path, default=None, help="Also write the table (markdown) here.")
    args = parser.parse_args(argv)
    sizes = [100_000] if args.quick else [int(s) for s in args.sizes.split(",")]
    dims = [int(s) for s in args.dims.split(",")]
    params = IndexParams(
        hnsw_m=args.hnsw_m, ef_construction=args.ef_construction, ef_search=args.ef_search, nprobe=args.nprobe
    )
    if args.threads:
        faiss.omp_set_num_threads(args.threads)
    rows: list[Row] = []
    print(f"faiss {faiss.__version__}, {faiss.omp_get_max_threads()} threads, params {params}", flush=True)
    for n in sizes:
        for d in dims:
            x = synthetic(n, d)
            queries = np.random.default_rng(2).choice(n, size=args.queries, replace=False)
            truth = exact_truth(x, queries)
            for kind in args.types.split(","):
                row = bench_one(x, kind, params, queries, truth, args.map_sample)
                rows.append(row)
                print(table([row]).splitlines()[-1], flush=True)
    lookup = {n: lookup_latency(n) for n in sizes}
    text = (
        table(rows)
        + "\n\n"
        + "\n".join(
            f"- ServingIndex.neighbours from the precomputed map (k=50, category + item exclusions), N={n:,}: "
            f"p50 {ms[0]:.3f} ms, p99 {ms[1]:.3f} ms"
            for n, ms in lookup.items()
        )
    )
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
