"""Relational engines behind Ibis: DuckDB (embedded, default) or Spark (``local[N]`` or a cluster URL).

The relational stages are written once as Ibis expressions; an :class:`Engine` only connects, loads the
canonical events and hands results back as Arrow. A registry maps engine names to factories; an unknown
name lists the valid ones.
"""

from __future__ import annotations

import functools
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ibis
import ibis.expr.types as ir
import pyarrow as pa
import pyarrow.parquet as pq


@dataclass
class Engine:
    """A connected Ibis backend plus a scratch folder removed by :meth:`close`."""

    name: str
    con: Any
    scratch: Path
    #: The memory cap of the one process that runs every query (DuckDB), in bytes; None on Spark, whose
    #: executors sort and spill partition by partition.
    memory_bytes: int | None = None
    _closers: list[Callable[[], None]] = field(default_factory=list)
    _releases: dict[str, Callable[[], None]] = field(default_factory=dict)

    def load(self, events: pa.Table | Path) -> ir.Table:
        """Register canonical events (an Arrow table, a parquet file, or a folder of parquet chunks)."""
        if isinstance(events, pa.Table):
            # Both engines read parquet natively and in parallel; going through a file also keeps Spark
            # from round-tripping the table through pandas.
            path = self.scratch / "input.parquet"
            pq.write_table(events, path, row_group_size=1 << 20)
            return self.con.read_parquet(str(path))
        events = Path(events)
        if events.is_dir():
            chunks = sorted(events.glob("*.parquet"))
            if not chunks:
                raise FileNotFoundError(f"no *.parquet files in {events}")
            if self.name == "spark":
                # The folder, filtered: given it bare, Spark reads every file in it, manifest.json too,
                # and given a glob it logs a FileNotFoundException with its Java stack on every load.
                return self.con.read_parquet(str(events), pathGlobFilter="*.parquet")
            return self.con.read_parquet(str(events / "*.parquet"))
        if not events.exists():
            raise FileNotFoundError(f"events file {events} does not exist")
        return self.con.read_parquet(str(events))

    def cache(self, expr: ir.Table) -> ir.Table:
        """Materialise ``expr`` until :meth:`uncache` or ``close``.

        On DuckDB a table of the scratch database file: DuckDB writes large results straight to the file
        in compressed row groups, so an intermediate bigger than the memory limit is read back from a
        few GB of compressed blocks instead of being spilled uncompressed like a temp table. On Spark a
        persisted DataFrame.
        """
        if self.name == "duckdb":
            name = ibis.util.gen_name("stage")
            cached = self.con.create_table(name, expr)
            release: Callable[[], None] = functools.partial(self.con.drop_table, name, force=True)
        else:
            cached = expr.cache()
            release = cached.release
        self._releases[cached.get_name()] = release
        self._closers.append(release)
        return cached

    def uncache(self, cached: ir.Table) -> None:
        """Free a table materialised by :meth:`cache` before ``close`` (large intermediates)."""
        release = self._releases.pop(cached.get_name(), None)
        if release is not None:
            self._closers.remove(release)
            release()

    def to_arrow(self, expr: ir.Table) -> pa.Table:
        """Execute ``expr`` and return the result as an Arrow table."""
        return expr.to_pyarrow()

    def batches(self, expr: ir.Table, rows: int) -> Iterator[pa.RecordBatch]:
        """Execute ``expr`` and stream its result in batches of about ``rows`` rows, in the result's
        order, typed as Ibis types ``expr`` (DuckDB hands back running sums as decimals)."""
        schema = expr.schema().to_pyarrow()
        if self.name == "duckdb":
            # Ibis's own to_pyarrow_batches calls a cursor method that DuckDB 2 no longer has.
            reader = self.con.con.sql(self.con.compile(expr)).to_arrow_reader(rows)
        else:
            reader = expr.to_pyarrow_batches(chunk_size=rows)
        for batch in reader:
            yield batch.cast(schema)

    def close(self) -> None:
        for closer in reversed(self._closers):
            closer()
        shutil.rmtree(self.scratch, ignore_errors=True)


def _duckdb(spark_master: str, threads: int | None, memory_limit: str | None) -> Engine:
    del spark_master
    scratch = Path(tempfile.mkdtemp(prefix="m2grl-duckdb-"))
    kwargs: dict[str, Any] = {"temp_directory": str(scratch / "spill")}
    if threads:
        kwargs["threads"] = threads
    if memory_limit:
        kwargs["memory_limit"] = memory_limit
    # A database file (not ``:memory:``) so that ``Engine.cache`` tables are stored compressed.
    con = ibis.duckdb.connect(database=str(scratch / "work.duckdb"), **kwargs)
    # Without insertion order DuckDB may stream parquet and windows in parallel more freely; every
    # result we read back is explicitly ordered.
    con.raw_sql("SET preserve_insertion_order = false")
    [(limit,)] = con.raw_sql("SELECT current_setting('memory_limit')").fetchall()
    engine = Engine("duckdb", con, scratch, memory_bytes=parse_size(limit))
    engine._closers.append(con.disconnect)
    return engine


def _spark(spark_master: str, threads: int | None, memory_limit: str | None) -> Engine:
    del threads
    try:
        from pyspark.sql import SparkSession
    except ImportError as exc:  # pragma: no cover - depends on the installed extras
        raise RuntimeError("engine 'spark' needs pyspark: pip install 'm2grl-service[spark]'") from exc
    scratch = Path(tempfile.mkdtemp(prefix="m2grl-spark-"))
    builder = (
        SparkSession.builder.master(spark_master)
        .appName("m2grl-prepare")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.sql.warehouse.dir", str(scratch / "warehouse"))
        .config("spark.local.dir", str(scratch / "local"))
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
    )
    if memory_limit:
        builder = builder.config("spark.driver.memory", jvm_memory(memory_limit))
    session = builder.getOrCreate()
    con = ibis.pyspark.connect(session)
    engine = Engine("spark", con, scratch)
    # Stopped on close: close deletes the scratch folders, and a later getOrCreate in the same process
    # would otherwise hand back this session, whose local and warehouse dirs are gone.
    engine._closers.append(session.stop)
    return engine


ENGINES: dict[str, Callable[[str, int | None, str | None], Engine]] = {"duckdb": _duckdb, "spark": _spark}


#: A memory size both engines read the same way (DuckDB ``memory_limit``, Spark ``spark.driver.memory``).
_MEMORY = re.compile(r"[0-9]+(\.[0-9]+)?(KB|MB|GB|TB)", re.IGNORECASE)


def check_memory_limit(memory_limit: str) -> str:
    """``memory_limit`` (e.g. ``"6GB"``) when both engines accept it; ``ValueError`` naming the format."""
    if not _MEMORY.fullmatch(memory_limit.strip()):
        raise ValueError(
            f"memory limit {memory_limit!r} is not a size like 512MB or 6GB (units KB, MB, GB, TB)"
        )
    return memory_limit.strip()


_KIB = {"KB": 1, "MB": 1024, "GB": 1024**2, "TB": 1024**3}

#: A size as DuckDB prints a setting: ``"3.7 GiB"``, ``"512.0 MiB"``, ``"1000 bytes"``.
_PRINTED_SIZE = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*(bytes|[KMGT]i?B)", re.IGNORECASE)
_UNIT_POWER = {"k": 1, "m": 2, "g": 3, "t": 4}


def parse_size(text: str) -> int:
    """Bytes in a printed size, binary units as binary and decimal as decimal, as DuckDB reads them
    (``"3.7 GiB"`` -> 3972844748, ``"4GB"`` -> 4000000000); ``ValueError`` on anything else."""
    match = _PRINTED_SIZE.fullmatch(text.strip())
    if not match:
        raise ValueError(f"not a size: {text!r}")
    number, unit = float(match.group(1)), match.group(2).lower()
    if unit == "bytes":
        return int(number)
    return int(number * (1024 if "i" in unit else 1000) ** _UNIT_POWER[unit[0]])


def jvm_memory(memory_limit: str) -> str:
    """A size checked by :func:`check_memory_limit` in the JVM's syntax (``-Xmx``), which takes whole
    numbers with a one-letter unit only: ``"4GB"`` -> ``"4096m"``, ``"1.5GB"`` -> ``"1536m"``."""
    size = check_memory_limit(memory_limit)
    kib = float(size[:-2]) * _KIB[size[-2:].upper()]
    return f"{round(kib / 1024)}m" if kib >= 1024 else f"{max(1, round(kib))}k"


def connect(
    name: str, *, spark_master: str = "local[2]", threads: int | None = None, memory_limit: str | None = None
) -> Engine:
    """Connect engine ``name`` (``duckdb`` or ``spark``); raises ``ValueError`` listing the valid names,
    or naming a malformed ``memory_limit`` (the engine's cap; ``None`` = its default, 80% of RAM on
    DuckDB)."""
    try:
        factory = ENGINES[name]
    except KeyError:
        raise ValueError(f"unknown engine {name!r}; valid: {', '.join(sorted(ENGINES))}") from None
    return factory(spark_master, threads, check_memory_limit(memory_limit) if memory_limit else None)


@contextmanager
def engine_session(name: str, **kwargs: Any) -> Iterator[Engine]:
    """``connect`` as a context manager that always closes the engine."""
    engine = connect(name, **kwargs)
    try:
        yield engine
    finally:
        engine.close()
