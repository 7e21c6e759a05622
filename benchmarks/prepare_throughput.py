"""Benchmark: events/s and peak memory of ``m2grl prepare`` on a synthetic log.

    python benchmarks/prepare_throughput.py                 # 100M events (the target size)
    python benchmarks/prepare_throughput.py --events 10000000

1. Generates the log with ``offline.data.synth`` into ``artifacts/bench/synth-<N>/`` once; reruns reuse it.
2. Runs ``offline.data.prepare.prepare_dataset`` (views item, category, shop) in a *child process*, so the
   peak RSS reported (``RUSAGE_CHILDREN``) is the prepare stage's own, not the generator's.
3. Prints one row per prepare stage (seconds, events/s) and the whole stage next to the targets
   (>= 1M events/s end to end, <= 8 GiB peak RSS), and saves the figures to
   ``artifacts/bench/prepare-<N>.json``.

4. Runs the reference: bare DuckDB queries on the same log, same threads and memory cap (a scan, one
   window over ``(user_id, timestamp)``, the two windows of session ids, the events rewritten sorted
   by user and time, and a minimal prepare in bare SQL; see :data:`REFERENCE_QUERIES`). They are
   lower bounds of the work any prepare has to do, printed side by side with ours.
   ``--no-reference`` skips them.

``--generate-only`` stops after step 1 (a generator benchmark on its own).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import GIB, cpu_seconds, peak_rss_bytes, print_table, rate, timed  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
TARGET_EVENTS_PER_S = 1_000_000
TARGET_RSS_BYTES = 8 * GIB
VIEWS = ("item", "category", "shop")
#: Pipeline order of the prepare stages (the manifest stores them sorted by name); unknown ones go last.
STAGE_ORDER = (
    "load",
    "clean_counts",
    "sessions",
    "vocab_item",
    "summary",
    "vocab_",
    "links",
    "cold_start",
    "catalogue",
    "checksums",
    "views_wait",
    "view_item",
    "view_",
)


def _stage_rank(name: str) -> int:
    return next((i for i, p in enumerate(STAGE_ORDER) if name.startswith(p)), len(STAGE_ORDER))


def ensure_log(events: int, cache: Path, seed: int, chunk_events: int) -> tuple[Path, dict[str, Any], bool]:
    """The synthetic log of ``events`` rows under ``cache`` (generated unless a complete one is there).

    Returns ``(folder, synth manifest, reused)``.
    """
    from core.atomic import read_json
    from offline.data.synth import SYNTH_VERSION, SynthConfig, generate

    folder = cache / f"synth-{events}"
    manifest_path = folder / "manifest.json"
    if manifest_path.exists():
        manifest = read_json(manifest_path)
        cfg = manifest.get("config", {})
        if (
            manifest.get("synth_version") == SYNTH_VERSION
            and cfg.get("events") == events
            and cfg.get("seed") == seed
        ):
            return folder, manifest, True
    generate(SynthConfig(events=events, seed=seed, chunk_events=chunk_events), folder, overwrite=True)
    return folder, read_json(manifest_path), False


def run_prepare_child(
    events_dir: Path, output: Path, engine: str, memory_limit: str | None
) -> tuple[float, float, int, dict[str, Any]]:
    """Run the prepare stage in a fresh interpreter.

    Returns (wall seconds, child CPU seconds, child peak RSS bytes, the dataset manifest).
    """
    from core.atomic import read_json

    cmd = [sys.executable, __file__, "--child", str(events_dir), str(output), "--engine", engine]
    cmd += ["--memory-limit", memory_limit or ""]
    cpu0 = cpu_seconds(children=True)
    with timed() as t:
        subprocess.run(cmd, check=True)
    cpu = cpu_seconds(children=True) - cpu0
    return t.seconds, cpu, peak_rss_bytes(children=True), read_json(output / "manifest.json")


def _child(events_dir: Path, output: Path, engine: str, memory_limit: str | None) -> None:
    from offline.data.config import PrepareConfig
    from offline.data.prepare import prepare_dataset

    prepare_dataset(
        events_dir,
        output,
        PrepareConfig(views=VIEWS),
        engine=engine,
        memory_limit=memory_limit or None,
        overwrite=True,
    )


_BY_USER_TIME = "PARTITION BY user_id ORDER BY timestamp"
_SESSION_OPEN = "CASE WHEN p IS NULL OR timestamp - p >= 3600 THEN 1 ELSE 0 END"

#: The reference queries: (name, statements run in order over ``{log}``, the parquet parts; ``{out}``:
#: a scratch file). "minimal prepare" is the least relational work of a prepare written by hand in bare
#: SQL: session ids (two windows: SQL cannot nest the running count of session starts in the ``lag``
#: that finds them) with each view's previous value, materialised; the events written sorted; one
#: edge count per view. It skips what ours adds (exact-duplicate removal, the total event order, runs,
#: splits, vocabularies, sequences, CSR), so it is a lower bound of our stages on the same engine.
REFERENCE_QUERIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("scan: sum(timestamp), distinct users", ("SELECT sum(timestamp), count(DISTINCT user_id) FROM {log}",)),
    (
        "one window: session starts (lag over user by time)",
        (
            f"SELECT sum({_SESSION_OPEN}) FROM "
            f"(SELECT timestamp, lag(timestamp) OVER ({_BY_USER_TIME}) AS p FROM {{log}})",
        ),
    ),
    (
        "two windows: session ids (lag, then running count)",
        (
            f"SELECT sum(s) FROM (SELECT sum(o) OVER ({_BY_USER_TIME} ROWS UNBOUNDED PRECEDING) AS s FROM "
            f"(SELECT user_id, timestamp, {_SESSION_OPEN} AS o FROM "
            f"(SELECT user_id, timestamp, lag(timestamp) OVER ({_BY_USER_TIME}) AS p FROM {{log}})))",
        ),
    ),
    (
        "rewrite sorted by user, time (parquet)",
        ("COPY (SELECT * FROM {log} ORDER BY user_id, timestamp) TO '{out}' (FORMAT parquet)",),
    ),
    (
        "minimal prepare: sessions + view lags (table), events sorted (parquet), 3 edge counts",
        (
            f"CREATE OR REPLACE TABLE s AS SELECT *, sum(o) OVER ({_BY_USER_TIME} ROWS UNBOUNDED PRECEDING) "
            f"AS session FROM (SELECT *, {_SESSION_OPEN} AS o FROM (SELECT *, "
            + ", ".join(
                f"lag({c}) OVER ({_BY_USER_TIME}) AS {a}"
                for c, a in (
                    ("timestamp", "p"),
                    ("item_id", "p_item"),
                    ("category_id", "p_category"),
                    ("shop_id", "p_shop"),
                )
            )
            + " FROM {log}))",
            "COPY (SELECT * EXCLUDE (o, p, p_item, p_category, p_shop) FROM s ORDER BY user_id, timestamp) "
            "TO '{out}' (FORMAT parquet)",
            *(
                f"SELECT count(*) FROM (SELECT p_{v}, {v}_id, count(*) FROM s "
                f"WHERE o = 0 AND p_{v} <> {v}_id GROUP BY ALL)"
                for v in VIEWS
            ),
            "DROP TABLE s",
        ),
    ),
)


def run_reference(events_dir: Path, scratch: Path, memory_limit: str | None) -> list[tuple[str, float]]:
    """Seconds of each :data:`REFERENCE_QUERIES` on bare DuckDB (its default threads: every core), in a
    database file of ``scratch`` as our engine uses (tables stored compressed, not spilled)."""
    import duckdb

    scratch.mkdir(parents=True, exist_ok=True)
    out, db = scratch / "sorted.parquet", scratch / "reference.duckdb"
    db.unlink(missing_ok=True)
    con = duckdb.connect(str(db))
    try:
        con.execute(f"SET temp_directory = '{scratch / 'spill'}'")
        con.execute("SET preserve_insertion_order = false")
        if memory_limit:
            con.execute(f"SET memory_limit = '{memory_limit}'")
        log = f"read_parquet('{events_dir / 'part-*.parquet'}')"
        timings = []
        for name, statements in REFERENCE_QUERIES:
            with timed() as t:
                for sql in statements:
                    con.execute(sql.format(log=log, out=out)).fetchall()
            timings.append((name, t.seconds))
        return timings
    finally:
        con.close()
        out.unlink(missing_ok=True)
        db.unlink(missing_ok=True)


def report_reference(events: int, timings: list[tuple[str, float]]) -> dict[str, float]:
    """Print the reference table; returns its figures."""
    print("\nreference: bare DuckDB on the same log (lower bounds of a prepare):")
    print_table(["query", "seconds", "events/s"], [(n, f"{s:.2f}", rate(events, s)) for n, s in timings])
    return dict(timings)


def report(
    events: int,
    synth: dict[str, Any],
    reused: bool,
    prep: tuple[float, float, int, dict[str, Any]] | None,
    memory_limit: str | None = None,
) -> dict[str, Any]:
    """Print the tables and return the figures as a dict."""
    gen_s = float(synth["timings"]["generate_s"])
    gen_cpu = float(synth["timings"].get("generate_cpu_s", float("nan")))
    state = "reused" if reused else "generated"
    # Generation runs in this process, before the prepare child: its own peak RSS is the generator's.
    gen_rss = "" if reused else f"; peak RSS {peak_rss_bytes() / GIB:.2f} GiB"
    print(
        f"\nsynthetic log: {events:,} events, {synth['counts']['sessions']:,} sessions ({state}: "
        f"{gen_s:.1f} s wall, {rate(events, gen_s)}; {gen_cpu:.1f} s CPU{gen_rss}; target >= 5M/s)"
    )
    result: dict[str, Any] = {
        "events": events,
        "cpus": os.cpu_count(),
        "load_avg_1m": os.getloadavg()[0],
        "generate_s": gen_s,
        "generate_cpu_s": gen_cpu,
    }
    if prep is None:
        return result
    wall, cpu, rss, manifest = prep
    timings: dict[str, float] = manifest.get("timings_s") or manifest.get("timings") or {}
    total = sum(timings.values())
    rows = [
        (name, f"{s:.2f}", rate(events, s), f"{100 * s / total:.0f}%" if total else "-")
        for name, s in sorted(timings.items(), key=lambda kv: _stage_rank(kv[0]))
    ]
    print(f"\nprepare ({manifest.get('engine', {}).get('name', '?')}, views {', '.join(VIEWS)}), per stage:")
    print_table(["stage", "seconds", "events/s", "share"], rows)
    # The views' file passes run in two background threads, each from its vocab_<view> to views_wait.
    background: dict[str, float] = manifest.get("background_timings_s") or {}
    if background:
        print("\nbeside them, in two background threads (from each vocab_<view> until views_wait):")
        print_table(
            ["stage", "seconds", "events/s"],
            [
                (name, f"{s:.2f}", rate(events, s))
                for name, s in sorted(background.items(), key=lambda kv: _stage_rank(kv[0]))
            ],
        )
    ok_rate = events / wall >= TARGET_EVENTS_PER_S
    ok_rss = rss <= TARGET_RSS_BYTES
    print(f"\nwhole prepare stage (engine memory limit: {memory_limit or 'engine default'}):")
    print_table(
        ["measure", "value", "target", "met"],
        [
            ("stages total (s)", f"{total:.1f}", "", ""),
            ("wall incl. start-up (s)", f"{wall:.1f}", "", ""),
            ("CPU user+sys (s)", f"{cpu:.1f}", "", ""),
            ("events per CPU-second", rate(events, cpu), "", ""),
            ("events/s end to end", rate(events, wall), ">= 1.00M/s", "yes" if ok_rate else "NO"),
            ("peak RSS (child)", f"{rss / GIB:.2f} GiB", "<= 8 GiB", "yes" if ok_rss else "NO"),
        ],
    )
    result |= {
        "memory_limit": memory_limit,
        "prepare_wall_s": wall,
        "prepare_cpu_s": cpu,
        "prepare_stages_s": timings,
        "prepare_background_stages_s": background,
        "events_per_s": events / wall,
        "peak_rss_bytes": rss,
        "counts": manifest.get("counts", {}),
    }
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=100_000_000, help="events in the synthetic log")
    parser.add_argument("--seed", type=int, default=0, help="generator seed")
    parser.add_argument("--chunk-events", type=int, default=5_000_000, help="rows per parquet part")
    parser.add_argument("--engine", default="duckdb", help="prepare engine (duckdb or spark)")
    parser.add_argument(
        "--cache", type=Path, default=REPO / "artifacts" / "bench", help="where logs are kept"
    )
    parser.add_argument(
        "--memory-limit",
        default="4GB",
        help="engine memory cap for prepare (DuckDB syntax; empty = engine default, 80%% of RAM)",
    )
    parser.add_argument("--generate-only", action="store_true", help="stop after generating the log")
    parser.add_argument("--no-reference", action="store_true", help="skip the bare-DuckDB reference queries")
    parser.add_argument("--child", nargs=2, metavar=("EVENTS_DIR", "OUTPUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(Path(args.child[0]), Path(args.child[1]), args.engine, args.memory_limit or None)
        return 0

    events_dir, synth, reused = ensure_log(args.events, args.cache, args.seed, args.chunk_events)
    prep = None
    if not args.generate_only:
        output = args.cache / f"prepared-{args.events}"
        prep = run_prepare_child(events_dir, output, args.engine, args.memory_limit or None)
    result = report(args.events, synth, reused, prep, args.memory_limit or None)
    if not args.generate_only and not args.no_reference:
        timings = run_reference(events_dir, args.cache / "reference-scratch", args.memory_limit or None)
        result["reference_s"] = report_reference(args.events, timings)
    out = args.cache / f"{'synth' if args.generate_only else 'prepare'}-{args.events}.json"
    out.write_text(json.dumps(result, indent=2, default=str))
    print(f"\nfigures saved to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
