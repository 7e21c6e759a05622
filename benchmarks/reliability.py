"""Reliability benchmark: the long versions of the CI tests in ``tests/reliability/``,
on a real uvicorn process on loopback, driven by a paced thread pool of ``httpx`` clients.

- hot swap: load for ``--swap-seconds`` (default 30) while a new index version is published every
  2 s (``index.publish.publish``; every other swap also forced with ``POST /admin/reload``): failed
  requests, and answers not wholly one version's (``X-Index-Version`` = body ``index_version``,
  candidates = that version's known answer);
- corruption: each kind of broken version pointed at by CURRENT and reloaded through the admin route
  of a serving process: refused (409), counted in ``m2grl_index_reloads_total{result="failure"}``, the
  old version still answering;
- Redis outage: load while Redis is SIGSTOPped, resumed, SIGKILLed and restarted on the same port:
  failures, latency and recent-store use per phase;
- soak: ``--soak-seconds`` (default 120) of steady mixed load: errors, and the server's resident memory
  after ``--warmup-seconds`` and at the end (growth must stay under 5%);
- batch stall: 2 and 4 client processes loop the largest ``POST /i2i:batch`` the service allows (256
  triggers x k=100, diversity mode, an 8,000-item index) while ``GET /healthz`` is probed every 20 ms:
  the probe's p50 / p99 (the refused 256 x 500 batch is shown too);
- slow clients: a body declared 100 bytes long of which 10 are sent (answered 408 after
  ``body_timeout_s``, here 2 s), and a 1 MiB header (431).

The client shares the 2 cores with the server, so rates are what the client offers, not a capacity.

    python benchmarks/reliability.py [--swap-seconds 30] [--soak-seconds 120] [--rate 300] [--quick]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
# the repository root first, so that the packages win over same-named scripts here
sys.path.insert(0, str(REPO))

from benchmarks.common import print_table  # noqa: E402
from core.atomic import atomic_write_bytes  # noqa: E402
from core.layout import IndexRoot  # noqa: E402
from tests.app.server import start_service  # noqa: E402
from tests.reliability.scenarios import (  # noqa: E402
    ADMIN,
    ADMIN_TOKEN,
    OUTAGE_PHASES,
    TRIGGERS,
    Answer,
    RedisProcess,
    build_root,
    corrupt,
    hot_swap,
    known_answers,
    metric_sample,
    percentile,
    redis_outage,
    soak,
)
from tests.reliability.stall import batch_stall, build_stall_root, huge_header, slow_body  # noqa: E402

#: broken index versions, one per kind of damage: (kind, checksums recomputed so that the deeper check refuses it)
CORRUPTIONS = [
    ("missing_marker", False),
    ("wrong_dimension", True),
    ("nan_embeddings", True),
    ("truncated_index", False),
    ("truncated_index", True),
    ("id_map_mismatch", False),
    ("id_map_mismatch", True),
]
MAX_SOAK_GROWTH = 0.05
MIB = 1 << 20


def ms(seconds: float) -> str:
    return f"{1000 * seconds:.1f}"


def load_row(name: str, answers: list[Answer], seconds: float, note: str) -> list[object]:
    lat = [a.latency_s for a in answers]
    failed = sum(1 for a in answers if a.problem is not None)
    return [name, f"{seconds:.0f}", len(answers), failed, f"{len(answers) / seconds:.0f}",
            ms(percentile(lat, 50)), ms(percentile(lat, 99)), note]  # fmt: skip


def run_corruptions(root: Path, log: Path) -> tuple[int, int, list[list[object]]]:
    """Each broken version reloaded by a serving process; returns (refused, cases, table rows)."""
    v1 = known_answers(root, "v1")
    rows: list[list[object]] = []
    refused = 0
    with start_service(root, settings={"admin_token": ADMIN_TOKEN}, log_path=log) as service, \
            httpx.Client(base_url=service.base, timeout=10) as client:  # fmt: skip
        for i, (kind, rehashed) in enumerate(CORRUPTIONS):
            name = f"bad{i}-{kind.replace('_', '-')}"
            corrupt(root, "v2", name, kind, rehashed=rehashed)
            atomic_write_bytes(IndexRoot(root).current, f"{name}\n".encode())
            r = client.post("/admin/reload", headers=ADMIN)
            failures = metric_sample(
                client.get("/metrics").text, "m2grl_index_reloads_total", result="failure"
            )
            answer = client.get(f"/i2i/{TRIGGERS[0]}?k=8").json()
            still_v1 = (
                answer["index_version"] == "v1"
                and [c["item_id"] for c in answer["candidates"]] == v1[TRIGGERS[0]]
            )
            ok = r.status_code == 409 and failures == i + 1 and still_v1
            refused += ok
            detail = r.json().get("detail", "")
            rows.append([kind + (" (re-hashed)" if rehashed else ""), r.status_code, int(failures),
                         "v1" if still_v1 else answer["index_version"], detail.split(": ", 2)[-1][:70]])  # fmt: skip
    return refused, len(CORRUPTIONS), rows


def run_stall(work: Path, *, seconds: float) -> list[list[object]]:
    """The batch-stall and slow-client scenarios on one service (``tests/reliability/stall.py``)."""
    root = build_stall_root(work)
    rows: list[list[object]] = []
    settings = {"body_timeout_s": 2.0, "ingest_token": "bench-token"}
    with start_service(root, settings=settings, log_path=work / "service.log") as service:
        big = {"item_ids": list(range(1, 257)), "k": 500, "mode": "diversity"}
        refused = httpx.post(f"{service.base}/i2i:batch", json=big, timeout=30)
        rows.append(["batch 256 x 500", 1, 1, f"{len(refused.content) / 1e6:.3f}", "-", "-",
                     f"{refused.status_code} {refused.json()['error']}"])  # fmt: skip
        for clients in (0, 2, 4):
            report = batch_stall(service.base, clients=clients, triggers=256, k=100, duration_s=seconds)
            rows.append(["batch 256 x 100 loop", clients, report.batches, f"{report.bytes_in / 1e6:.0f}",
                         ms(report.quantile(0.5)), ms(report.quantile(0.99)),
                         ",".join(str(s) for s in sorted(report.statuses)) or "-"])  # fmt: skip
        body = slow_body(service.base, wait_s=30.0)
        rows.append(
            ["body 10 of 100 bytes", 1, "-", "-", "-", "-", f"{body.status} after {body.seconds:.1f} s"]
        )
        head = huge_header(service.base, 1 << 20, wait_s=30.0)
        rows.append(["1 MiB header", 1, "-", "-", "-", "-", f"{head.status} after {head.seconds:.2f} s"])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--swap-seconds", type=float, default=30.0)
    parser.add_argument("--soak-seconds", type=float, default=120.0)
    parser.add_argument("--warmup-seconds", type=float, default=15.0)
    parser.add_argument("--rate", type=float, default=300.0, help="offered requests/s of the load runs")
    parser.add_argument("--quick", action="store_true", help="short runs (a smoke test of this script)")
    args = parser.parse_args()
    if args.quick:
        args.swap_seconds, args.soak_seconds, args.warmup_seconds = 8.0, 12.0, 4.0

    work = Path(tempfile.mkdtemp(prefix="m2grl-reliability-"))
    try:
        base = build_root(work / "base")
        summary: list[list[object]] = []

        def fresh(name: str) -> Path:
            dst = work / name / "index"
            shutil.copytree(base, dst)
            return dst

        t0 = time.perf_counter()
        swap = hot_swap(fresh("swap"), duration_s=args.swap_seconds, rate=args.rate, threads=6,
                        log_path=work / "swap.log")  # fmt: skip
        summary.append(load_row("hot swap", swap.answers, swap.seconds,
                                f"{len(swap.swaps)} swaps, {len(swap.served)} versions served, "
                                f"{swap.reloads_ok:.0f} reloads ok / {swap.reloads_failed:.0f} failed"))  # fmt: skip

        refused, cases, corruption_rows = run_corruptions(fresh("corrupt"), work / "corrupt.log")

        redis = RedisProcess(work / "redis")
        redis.start()
        phase_s = 4.0
        try:
            phases = redis_outage(fresh("redis"), redis, phase_s=phase_s, rate=min(args.rate, 200.0),
                                  log_path=work / "redis.log")  # fmt: skip
        finally:
            redis.stop()
        outage = [[p.name, p.requests, len(p.failures), p.events_refused, ms(p.p50_s), ms(p.p99_s), ms(p.max_s),
                   f"{p.recent_used:.2f}", f"{p.store_errors:.0f}"] for p in phases]  # fmt: skip
        outage_s = phase_s * sum(units for _, units in OUTAGE_PHASES)
        requests = sum(p.requests for p in phases)
        summary.append(["redis outage", f"{outage_s:.0f}", requests, sum(len(p.failures) for p in phases),
                        f"{requests / outage_s:.0f}", ms(max(p.p50_s for p in phases)),
                        ms(max(p.p99_s for p in phases)),
                        "stopped, resumed, killed, restarted: worst phase latencies (table below)"])  # fmt: skip

        soaked = soak(fresh("soak"), duration_s=args.soak_seconds, warmup_s=args.warmup_seconds, rate=args.rate,
                      threads=6, log_path=work / "soak.log")  # fmt: skip
        verdict = "ok" if soaked.growth < MAX_SOAK_GROWTH else f"OVER {MAX_SOAK_GROWTH:.0%}"
        summary.append(load_row("soak", soaked.answers, soaked.seconds,
                                f"RSS {soaked.rss_warm / MIB:.1f} -> {soaked.rss_end / MIB:.1f} MiB "
                                f"({soaked.growth:+.2%}, {verdict})"))  # fmt: skip
        summary.append(["corruption", "-", cases, cases - refused, "-", "-", "-",
                        f"{refused}/{cases} broken versions refused, old version kept serving"])  # fmt: skip

        stall_rows = run_stall(work / "stall", seconds=4.0 if args.quick else 10.0)

        print(f"\nreliability benchmark ({time.perf_counter() - t0:.0f} s, offered {args.rate:.0f} req/s)\n")
        print_table(["scenario", "s", "requests", "failed", "req/s", "p50 ms", "p99 ms", "notes"], summary)
        print(
            "\nRedis outage, per phase (recent used = share of answers excluding the user's recent category)\n"
        )
        print_table(["phase", "requests", "failed", "events 503", "p50 ms", "p99 ms", "max ms", "recent used",
                     "store errors"], outage)  # fmt: skip
        print("\ncorrupted versions reloaded by a serving process\n")
        print_table(["corruption", "reload status", "failures counted", "serving", "reason"], corruption_rows)
        print("\nstalling a worker: /healthz while batch clients loop, slow bodies, huge headers\n")
        print_table(["scenario", "clients", "batches", "MB received", "healthz p50 ms", "healthz p99 ms", "answer"],
                    stall_rows)  # fmt: skip
        print("\nsoak: server RSS over time\n")
        step = max(1, len(soaked.rss_samples) // 12)
        print_table(
            ["t s", "RSS MiB"], [[f"{t:.0f}", f"{rss / MIB:.1f}"] for t, rss in soaked.rss_samples[::step]]
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
