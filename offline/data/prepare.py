"""The ``prepare`` job: canonical events -> a dataset folder (``core.layout.DatasetLayout``).

Relational stages (cleaning, sessions, splits, vocabulary counts, link tables) are Ibis expressions
run by the chosen engine (DuckDB by default, Spark with ``engine="spark"``). The sessions stream from
the engine into the events file, range of users by range, sorted; every later stage reads that file. The
array stages run in numpy: each view's runs are cut from that file in one sequential read (it is sorted
by user and time), then vocabulary order, sequences, edges, CSR and walks. The folder is built in a
temporary sibling and renamed into place (``core.atomic.atomic_dir``).
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import logging
import platform
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import ibis.expr.types as ir
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from core.atomic import atomic_dir, sha256_file
from core.catalogue import write_catalogue
from core.id_labels import IdLabels, write_id_labels
from core.layout import DatasetLayout
from core.manifests import DatasetManifest
from core.titles import write_titles
from core.vocab import lookup
from offline.data.adapters import (
    AdapterResult,
    BadRowReport,
    movielens_files,
    read_generic,
    read_movielens,
    read_taobao,
)
from offline.data.catalogue import build_catalogue, event_attributes
from offline.data.cleaning import check_schema, clean, clean_rows, drop_counts
from offline.data.config import BadInputError, LogFormat, PrepareConfig
from offline.data.engine import Engine, check_memory_limit, engine_session
from offline.data.graphs import (
    behavior_levels,
    item_value_counts,
    item_values,
    link_tables,
    sequence_edges,
    session_runs,
    sort_vocab,
    view_counts,
    weight_levels,
)
from offline.data.presets import preset
from offline.data.sessions import (
    assign_sessions,
    can_sessionise,
    session_passes,
    sessionise,
    user_ranges,
)
from offline.data.splits import DAY_S, label_split, time_cuts
from offline.data.walks import random_walks

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
_INTERNAL = ("pos", "user_events")


def walks_path(root: Path, view: str) -> Path:
    """Optional augmentation walks of a view (same ragged format as ``sequences/<view>.npz``)."""
    return Path(root) / "walks" / f"{view}.npz"


def labels_path(root: Path, view: str) -> Path:
    """Labels of factorised ids of a view (``id, label``), e.g. MovieLens genre strings
    (``DatasetLayout.labels``; read them with ``core.id_labels.read_id_labels``)."""
    return DatasetLayout(Path(root)).labels(view)


def _utc(ts: int) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def _span(lo: int, hi: int) -> str:
    """``2019-10-01 00:00:00 to 2019-10-01 03:00:00 UTC (0.13 days)``: the time range of a log."""
    return f"{_utc(lo)} to {_utc(hi)} UTC ({(hi - lo + 1) / DAY_S:.3g} days)"


def empty_split_message(config: PrepareConfig, which: str, min_ts: int, max_ts: int, end: int) -> str:
    """Why the ``which`` (``train``/``test``) split is empty and which option to change (one line)."""
    span = _span(min_ts, max_ts)
    if config.split == "per_user":
        need = int(np.ceil(1 / config.test_fraction - 1e-9))
        return (
            f"the {which} split is empty: the log spans {span}; split=per_user holds out "
            f"floor(n * test_fraction={config.test_fraction:g}) of each user's n events, so a user needs "
            f"at least {need} events: raise --test-fraction, or use --split global_time --test-days N"
        )
    lo, hi = time_cuts(end, config)
    period = f"[{_utc(lo)}, {_utc(hi)}) UTC"
    what = "the validation period" if config.target == "valid" else "the test period"
    if which == "train":
        fix = f"lower --test-days below {(max_ts - min_ts + 1) / DAY_S / (2 if config.target == 'valid' else 1):.3g}"
    else:
        fix = "check time_window (--config) against the log, or raise --test-days"
    return (
        f"the {which} split is empty: the log spans {span} and split=global_time with "
        f"test_days={config.test_days:g} makes {what} {period}: {fix}, or use --split per_user "
        f"--test-fraction 0.2"
    )


class _Timer:
    """Wall-clock seconds per stage, with a progress bar over the stages. ``timings`` are the main
    thread's stages, one after another; ``background`` the stages run beside them."""

    def __init__(self, stages: int) -> None:
        self.timings: dict[str, float] = {}
        self.background: dict[str, float] = {}
        self.bar = tqdm(total=stages, desc="prepare", unit="stage", disable=None)

    @contextmanager
    def stage(self, name: str, *, background: bool = False) -> Iterator[None]:
        if not background:
            self.bar.set_postfix_str(name)
        start = time.perf_counter()
        yield
        seconds = round(time.perf_counter() - start, 4)
        (self.background if background else self.timings)[name] = seconds
        self.bar.update(1)
        log.info("prepare: %s took %.2fs", name, seconds)


def _versions(engine: str) -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("numpy", "pyarrow", "ibis-framework", "duckdb", "sqlglot") + (
        ("pyspark",) if engine == "spark" else ()
    ):
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def _checksums(events: pa.Table | Path, inputs: Sequence[Path]) -> list[dict[str, Any]]:
    files = [Path(p) for p in inputs]
    if not isinstance(events, pa.Table):
        path = Path(events)
        files += sorted(path.glob("*.parquet")) if path.is_dir() else [path]
    return [
        {"path": str(f), "bytes": f.stat().st_size, "sha256": sha256_file(f)} for f in dict.fromkeys(files)
    ]


def _column(table: pa.Table, name: str) -> np.ndarray:
    return table.column(name).to_numpy()


def _sessions_by_user_range(
    engine: Engine,
    raw: ir.Table,
    config: PrepareConfig,
    kept: int,
    *,
    fast: bool,
    end: int,
    path: Path,
) -> int:
    """The cleaned log with its sessions and splits written to ``path``: ``sessionise`` (``fast``) or
    ``assign_sessions`` of ``clean``, run over ranges of user ids one after another when the whole log
    would not fit the engine's memory (``session_passes``). Returns the distinct events."""
    kept_rows = clean_rows(raw, config)
    passes = session_passes(kept, engine.memory_bytes)
    edges: list[float] = []
    if passes > 1:
        # Over the kept rows, duplicates included: balancing the ranges needs no de-duplication pass.
        quantiles = kept_rows.user_id.quantile([i / passes for i in range(1, passes)])
        edges = engine.to_arrow(kept_rows.aggregate(q=quantiles)).column("q")[0].as_py()
    rows = kept_rows if fast else clean(raw, config)
    return write_sessions(engine, rows, config, edges, fast=fast, end=end, path=path)


#: Rows per batch streamed from the engine to the events file.
_WRITE_BATCH_ROWS = 1 << 20


def write_sessions(
    engine: Engine,
    rows: ir.Table,
    config: PrepareConfig,
    edges: Sequence[float],
    *,
    fast: bool,
    end: int,
    path: Path,
) -> int:
    """``label_split`` of ``sessionise(rows)`` (``fast``: cleaned rows with duplicates) or of
    ``assign_sessions(rows)`` (distinct events), written to the parquet file ``path`` sorted by user and
    position without the events after the held-out period (null split); returns the distinct events,
    those included.

    One range of users at a time (``user_ranges(edges)``), each range numbering its sessions on from the
    ranges before it. Sessions never cross users and ranges come in user order, so the file equals one
    pass sorted as a whole, without a sort of the whole log. Batches are encoded in a background thread
    while the engine computes the next ones.
    """
    writer: pq.ParquetWriter | None = None
    first_session = 0
    distinct = 0
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="prepare-write")
    pending: list[Future[None]] = []
    buffered: list[pa.RecordBatch] = []

    def flush(rows: int) -> None:
        """Hand the writer the first ``rows`` buffered rows as one row group."""
        assert writer is not None
        table = pa.Table.from_batches(buffered, schema=writer.schema)
        buffered[:] = table.slice(rows).to_batches()
        if len(pending) > 1:  # at most two row groups wait for the writer
            pending.pop(0).result()
        pending.append(pool.submit(writer.write_table, table.slice(0, rows), row_group_size=rows))

    try:
        for keep in user_ranges(rows.user_id, edges):
            part = rows if keep is None else rows.filter(keep)
            sessioned = (
                sessionise(part, config, first_session=first_session)
                if fast
                else assign_sessions(part, config, first_session=first_session)
            )
            labelled = label_split(sessioned, config, end=end)
            # Ties of the event rank broken the same way on every engine: both write the same rows.
            ordered = labelled.order_by([labelled.user_id, labelled.pos]).drop(*_INTERNAL)
            if writer is None:
                writer = pq.ParquetWriter(str(path), ordered.schema().to_pyarrow(), compression="zstd")
            for batch in engine.batches(ordered, _WRITE_BATCH_ROWS):
                distinct += batch.num_rows
                if batch.num_rows:
                    first_session = max(first_session, int(pc.max(batch.column("session")).as_py()) + 1)
                buffered.append(batch.filter(pc.is_valid(batch.column("split"))))
                # Row groups of a fixed size, whatever the ranges and batches: the same file from any.
                while sum(b.num_rows for b in buffered) >= _WRITE_BATCH_ROWS:
                    flush(_WRITE_BATCH_ROWS)
        if writer is not None and (tail := sum(b.num_rows for b in buffered)):
            flush(tail)
        for done in pending:
            done.result()
    finally:
        pool.shutdown(cancel_futures=True)
        if writer is not None:
            writer.close()
    return distinct


def _save_npz(path: Path, **arrays: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        # numpy's stubs type **kwds of savez too narrowly (as the allow_pickle flag).
        np.savez(fh, **arrays)  # type: ignore[arg-type]


def _save_npy(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, array)


#: Rows of the events file read at a time when cutting runs (whole row groups, about this many; a few
#: hundred MB of arrays per batch).
_RUN_BATCH_ROWS = 1 << 22


def _dictionary_codes(column: pa.ChunkedArray, values: Mapping[str, int], default: int) -> np.ndarray:
    """``values[v]`` (``default`` when absent) for every entry of a dictionary-encoded string column."""
    out = []
    for chunk in column.chunks:
        codes = np.array([values.get(v, default) for v in chunk.dictionary.to_pylist()] + [default])
        # A null entry (none in a prepared file) takes the last code, ``default``.
        out.append(codes[pc.fill_null(chunk.indices, len(codes) - 1).to_numpy()])
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


def _row_group_batches(reader: pq.ParquetFile, columns: Sequence[str]) -> Iterator[pa.Table]:
    """The file's row groups, read about ``_RUN_BATCH_ROWS`` rows at a time, in order."""
    group: list[int] = []
    rows = 0
    for i in range(reader.metadata.num_row_groups):
        group.append(i)
        rows += reader.metadata.row_group(i).num_rows
        if rows >= _RUN_BATCH_ROWS or i == reader.metadata.num_row_groups - 1:
            yield reader.read_row_groups(group, columns=list(columns))
            group, rows = [], 0


def _train_rows(
    path: Path, column: str, levels: Mapping[str, int] | None
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray | None]]:
    """``session, node, level`` (``level`` None without ``levels``) of the train events of the events
    file whose ``column`` is known, in file order (user, then time), batch by batch, each batch holding
    whole sessions: the rows of a batch's last session wait for the next batch."""
    columns = ["session", "split", column] + (["behavior"] if levels is not None else [])
    reader = pq.ParquetFile(path, read_dictionary=["split", "behavior"])
    tail: list[np.ndarray] = []
    for batch in _row_group_batches(reader, columns):
        keep = _dictionary_codes(batch.column("split"), {"train": 1}, 0).astype(bool)
        node = batch.column(column)
        if node.null_count:
            keep &= pc.is_valid(node).to_numpy()
        rows = [batch.column("session").to_numpy()[keep], pc.fill_null(node, 0).to_numpy()[keep]]
        if levels is not None:
            rows.append(_dictionary_codes(batch.column("behavior"), levels, 0)[keep].astype(np.int8))
        rows = [np.concatenate([t, r]) for t, r in zip(tail, rows, strict=True)] if tail else rows
        session = rows[0]
        if (session[1:] < session[:-1]).any():  # cannot happen: the job writes the file in this order
            raise RuntimeError(f"{path}: sessions out of order; runs need the file sorted by user and time")
        cut = int(np.searchsorted(session, session[-1])) if len(session) else 0
        tail = [a[cut:] for a in rows]
        if cut:
            yield rows[0][:cut], rows[1][:cut], rows[2][:cut] if levels is not None else None
    if tail and len(tail[0]):
        yield tail[0], tail[1], tail[2] if levels is not None else None


def _vocabulary(
    engine: Engine, prepared: ir.Table, config: PrepareConfig, view: str, layout: DatasetLayout
) -> tuple[np.ndarray, np.ndarray]:
    """A view's vocabulary (an engine aggregate of the train events), written; returns ids and counts."""
    counts = engine.to_arrow(view_counts(prepared, config.column(view)))
    vocab, vocab_counts = sort_vocab(_column(counts, "id"), _column(counts, "count"))
    _save_npy(layout.vocab(view), vocab)
    _save_npy(layout.vocab_counts(view), vocab_counts)
    return vocab, vocab_counts


def _view_files(
    config: PrepareConfig, view: str, layout: DatasetLayout, vocab: np.ndarray, vocab_counts: np.ndarray
) -> dict[str, Any]:
    """Sequences, graph (CSR + edge table) of one view; returns its counts. Numpy and pyarrow only, so
    it runs beside the engine's stages.

    The runs are cut from the events file already written (``_train_rows``,
    ``offline.data.graphs.session_runs``), and the edges counted from the sequences
    (``offline.data.graphs.sequence_edges``).
    """
    level_weights = weight_levels(config)
    levels_of = None if level_weights is None else behavior_levels(config, level_weights)
    # Filled batch by batch: a view has at most as many runs as train events with a value (the counts),
    # and writing into one array costs less than concatenating the batches (new pages are slow to map).
    capacity = int(vocab_counts.sum())
    tokens = np.empty(capacity, dtype=np.int32)
    run_levels = None if levels_of is None else np.empty(capacity, dtype=np.int8)
    runs_per_session, n_runs = [], 0
    for session, node, level in _train_rows(layout.events, config.column(view), levels_of):
        per_session, run_nodes, levels = session_runs(session, node, level)
        rows = lookup(run_nodes, vocab)
        if (rows < 0).any():  # cannot happen: runs and vocabulary both come from the train split
            raise RuntimeError(f"view {view}: {int((rows < 0).sum())} sequence tokens outside the vocabulary")
        tokens[n_runs : n_runs + len(rows)] = rows
        if run_levels is not None and levels is not None:
            run_levels[n_runs : n_runs + len(rows)] = levels
        runs_per_session.append(per_session)
        n_runs += len(rows)
    tokens = tokens[:n_runs]
    run_levels = None if run_levels is None else run_levels[:n_runs]
    seq_indptr = np.zeros(sum(map(len, runs_per_session)) + 1, dtype=np.int64)
    if runs_per_session:
        np.cumsum(np.concatenate(runs_per_session), out=seq_indptr[1:])
    _save_npz(layout.sequences(view), indptr=seq_indptr, tokens=tokens)
    edges = sequence_edges(seq_indptr, tokens, len(vocab), run_levels, level_weights)
    del tokens, run_levels
    layout.edges(view).parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(edges.to_arrow(vocab), layout.edges(view), compression="zstd")
    indptr, indices, weights = edges.to_csr(len(vocab))
    _save_npz(layout.graph(view), indptr=indptr, indices=indices, weights=weights)
    return {
        "vocab": len(vocab),
        "edges": len(edges.count),
        "sequences": len(seq_indptr) - 1,
        "tokens": int(seq_indptr[-1]),
        "csr": (indptr, indices, weights),
    }


def _link_stage(
    engine: Engine,
    counts: ir.Table,
    config: PrepareConfig,
    view: str,
    layout: DatasetLayout,
    item_vocab: np.ndarray,
    view_vocab: np.ndarray,
) -> int:
    """``attributes/<view>.npy`` and ``links/<item>-<view>.npy`` from the cached ``item_value_counts``
    of the prepared events; returns the items with several values."""
    values = engine.to_arrow(item_values(counts, config.column(view)).order_by("item_id"))
    attributes, links = link_tables(
        item_vocab, _column(values, "item_id"), _column(values, "value"), view_vocab
    )
    _save_npy(layout.attributes(view), attributes)
    _save_npy(layout.link(config.item_view, view), links)
    return int((_column(values, "n_values") > 1).sum())


def _summary(engine: Engine, prepared: ir.Table) -> dict[str, int]:
    is_test = prepared.split == "test"
    agg = prepared.aggregate(
        events=prepared.count(),
        users=prepared.user_id.nunique(),
        items=prepared.item_id.nunique(),
        sessions=prepared.session.nunique(),
        train_events=(~is_test).cast("int64").sum().fill_null(0),
        test_events=is_test.cast("int64").sum().fill_null(0),
        test_users=prepared.user_id.nunique(where=is_test),
        train_sessions=prepared.session.nunique(where=~is_test),
    )
    row = engine.to_arrow(agg).to_pylist()[0]
    return {k: int(v or 0) for k, v in row.items()}


def prepare_dataset(
    events: pa.Table | Path,
    output: Path,
    config: PrepareConfig,
    *,
    engine: str = "duckdb",
    spark_master: str = "local[2]",
    memory_limit: str | None = None,
    bad_rows: BadRowReport | None = None,
    inputs: Sequence[Path] = (),
    overwrite: bool = False,
    labels: Mapping[str, pa.Table] | None = None,
    filtered: Mapping[str, int] | None = None,
    require_test: bool = False,
    extra: Mapping[str, Any] | None = None,
    titles: pa.Table | None = None,
    listing: pa.Table | None = None,
) -> Path:
    """Canonical events -> dataset folder at ``output`` (``core.layout.DatasetLayout``); returns ``output``.

    ``events`` is a canonical Arrow table, a parquet file, or a folder of parquet chunks. ``memory_limit``
    caps the engine (e.g. ``"6GB"``; ``None``: the engine's default, 80% of RAM on DuckDB, which spills
    to its scratch folder beyond it). ``bad_rows`` (the
    adapter's report) is checked against ``config.max_bad_row_share`` first and stored in the manifest;
    ``inputs`` are raw files whose sha256 goes in the manifest; ``labels`` (``view -> Table(id, label)``)
    are written to ``labels/<view>.parquet``; ``filtered`` (rows an adapter dropped on purpose, by
    reason) is reported with the cleaning counts; ``require_test`` refuses an empty test split (an empty
    train split is always refused), naming the option to change; ``extra`` adds manifest entries.
    Raises ``FileExistsError`` when ``output`` exists and not ``overwrite``, ``BadInputError`` on
    unusable input.
    ``titles`` (``item_id, title``, ``core.titles``) are written to ``titles.parquet`` when the source has
    them: the explorer page and ``GET /i2i?fields=title`` show them (``build-index`` copies them).
    ``catalogue.parquet`` (``core.catalogue``) holds every item of ``events`` (before cleaning and
    splitting) and of ``listing`` (``item_id, <view>_id...``: the source's items without behaviour too).
    """
    output = Path(output)
    if output.exists() and not overwrite:
        raise FileExistsError(f"{output} already exists (pass overwrite=True to replace it)")
    if bad_rows is not None:
        bad_rows.check(config.max_bad_row_share)
    timer = _Timer(stages=11 + 2 * len(config.views))
    with (
        engine_session(engine, spark_master=spark_master, memory_limit=memory_limit) as eng,
        atomic_dir(output, overwrite=overwrite) as tmp,
    ):
        layout = DatasetLayout(tmp)
        with timer.stage("load"):
            raw = eng.load(events)
            check_schema(raw, config)
        with timer.stage("clean_counts"):
            dropped = eng.to_arrow(drop_counts(raw, config)).to_pylist()[0]
        if not dropped["kept"]:
            raise BadInputError(
                f"no event survives cleaning (read {dropped['rows']} rows; dropped {dropped})"
            )
        end = config.time_window[1] if config.time_window else int(dropped["max_timestamp"]) + 1
        with timer.stage("sessions"):
            # The events file is the one intermediate: every later stage reads it. Without a session
            # cap, one sort gives the distinct events and their sessions (``sessionise``).
            n_clean = _sessions_by_user_range(
                eng,
                raw,
                config,
                int(dropped["kept"]),
                fast=can_sessionise(config),
                end=end,
                path=layout.events,
            )
            prepared = eng.load(layout.events)
        # Each view's file pass (numpy and pyarrow over the events file, no engine) runs in a background
        # thread while the engine computes the next vocabularies, the summary, the link tables and the
        # catalogue. Two threads: the item view's pass is the longest, the side views' run beside it.
        pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="prepare-views")
        try:
            passes: dict[str, Future[dict[str, Any]]] = {}
            vocabs: dict[str, np.ndarray] = {}

            def start_pass(view: str) -> None:
                with timer.stage(f"vocab_{view}"):
                    vocab, vocab_counts = _vocabulary(eng, prepared, config, view, layout)
                vocabs[view] = vocab

                def run() -> dict[str, Any]:
                    with timer.stage(f"view_{view}", background=True):
                        return _view_files(config, view, layout, vocab, vocab_counts)

                passes[view] = pool.submit(run)

            start_pass(config.item_view)
            with timer.stage("summary"):
                counts: dict[str, Any] = _summary(eng, prepared)
            time_range = int(dropped["min_timestamp"]), int(dropped["max_timestamp"])
            if counts["train_events"] == 0 or (require_test and counts["test_events"] == 0):
                which = "train" if counts["train_events"] == 0 else "test"
                raise BadInputError(empty_split_message(config, which, *time_range, end))
            for view in config.side_views:
                start_pass(view)
            item_vocab = vocabs[config.item_view]
            conflicts: dict[str, int] = {}
            with timer.stage("links"):
                if config.side_views:
                    # One scan of the events for every side view (about one row per item to cache).
                    columns = [config.column(v) for v in config.side_views]
                    value_counts = eng.cache(item_value_counts(prepared, columns))
                    for view in config.side_views:
                        conflicts[view] = _link_stage(
                            eng, value_counts, config, view, layout, item_vocab, vocabs[view]
                        )
                    eng.uncache(value_counts)
            with timer.stage("cold_start"):
                test_items = eng.to_arrow(
                    prepared.filter(prepared.split == "test").select("item_id").distinct()
                )
                counts["cold_start_test_items"] = int(
                    (lookup(_column(test_items, "item_id"), item_vocab) < 0).sum()
                )
                counts["test_items"] = test_items.num_rows
            with timer.stage("catalogue"):
                catalogue = build_catalogue(
                    *event_attributes(eng, raw, config.side_views), listing=listing, titles=titles
                )
                counts["catalogue_items"] = write_catalogue(layout.catalogue, catalogue)
                counts["catalogue_items_without_train"] = int((lookup(catalogue.items, item_vocab) < 0).sum())
            with timer.stage("checksums"):
                checksums = _checksums(events, inputs)
            with timer.stage("views_wait"):
                per_view = {view: passes[view].result() for view in config.views}
        finally:
            pool.shutdown(cancel_futures=True)
        with timer.stage("walks"):
            for i, view in enumerate(config.views):
                if config.walks_per_node == 0:
                    break
                indptr, indices, weights = per_view[view]["csr"]
                w_indptr, w_tokens = random_walks(
                    indptr,
                    indices,
                    weights,
                    walks_per_node=config.walks_per_node,
                    walk_length=config.walk_length,
                    p=config.p,
                    q=config.q,
                    seed=config.seed + i,
                )
                _save_npz(walks_path(tmp, view), indptr=w_indptr, tokens=w_tokens)
                per_view[view]["walks"] = len(w_indptr) - 1
        with timer.stage("labels"):
            for view, table in (labels or {}).items():
                write_id_labels(layout.labels(view), IdLabels.from_table(table))
            n_titles = write_titles(layout.titles, titles) if titles is not None else None
        timer.bar.close()
        drops = {
            k: int(v)
            for k, v in dropped.items()
            if k not in ("rows", "kept", "min_timestamp", "max_timestamp")
        }
        drops["duplicate"] = int(dropped["kept"]) - n_clean
        drops["after held-out period"] = n_clean - counts["events"]
        counts |= {
            "input_rows": int(dropped["rows"]),
            "vocab": {v: per_view[v]["vocab"] for v in config.views},
            "edges": {v: per_view[v]["edges"] for v in config.views},
            "sequences": {v: per_view[v]["sequences"] for v in config.views},
            "sequence_tokens": {v: per_view[v]["tokens"] for v in config.views},
            "walks": {v: per_view[v].get("walks", 0) for v in config.views},
            "items_with_several_values": conflicts,
        }
        manifest = {
            "format": "m2grl-dataset",
            "format_version": FORMAT_VERSION,
            "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "config": config.to_dict(),
            "views": list(config.views),
            "relations": [[config.item_view, v] for v in config.side_views],
            "target": config.target,
            "split": {"kind": config.split, "end": end if config.split == "global_time" else None},
            "time_range": list(time_range),
            "inputs": checksums,
            "counts": counts,
            "dropped": drops | {f"adapter: {k}": int(v) for k, v in (filtered or {}).items()},
            "bad_rows": bad_rows.to_dict() if bad_rows is not None else None,
            "labels": sorted(labels or {}),
            "titles": n_titles,
            "timings_s": timer.timings,
            "background_timings_s": timer.background,
            "engine": {
                "name": eng.name,
                "spark_master": spark_master if eng.name == "spark" else None,
                "memory_limit": memory_limit,
            },
            "versions": _versions(eng.name),
            "argv": sys.argv,
        } | dict(extra or {})
        DatasetManifest(**manifest).write(layout.manifest)
    return output


def read_source(
    source: Literal["movielens", "taobao", "generic"],
    input_path: Path,
    *,
    column_map: Mapping[str, str | int] | None = None,
    log_format: LogFormat | None = None,
    min_rating: float = 3.0,
) -> AdapterResult:
    """Run the adapter of ``source`` on ``input_path`` (MovieLens: a release folder or its ratings file,
    ``offline.data.adapters.movielens_files``; generic: ``column_map`` and ``log_format``)."""
    input_path = Path(input_path)
    if not input_path.exists():
        raise FileNotFoundError(f"input {input_path} does not exist")
    if source == "movielens":
        kind, ratings, movies = movielens_files(input_path)
        return read_movielens(ratings, movies, min_rating=min_rating, kind=kind)
    if source == "taobao":
        return read_taobao(input_path)
    if source == "generic":
        if not column_map:
            raise ValueError(
                "the generic source needs a column mapping (canonical=source, e.g. --column user_id=uid, "
                "or by position from 1: --column user_id=1)"
            )
        return read_generic(input_path, column_map, log_format=log_format)
    raise ValueError(f"unknown source {source!r}; valid: generic, movielens, taobao")


def _check_behavior_map(log_format: LogFormat | None, config: PrepareConfig) -> None:
    """Refuse a behaviour mapping onto a behaviour the config drops (it would lose those rows)."""
    for raw, canon in (log_format.behavior_map if log_format else {}).items():
        if canon not in config.behaviors:
            raise BadInputError(
                f"--behavior {raw}={canon}: {canon!r} is not a kept behaviour (kept: "
                f"{', '.join(config.behaviors)}); map to one of them, or set behaviors and "
                "behavior_weights in --config"
            )


def _unkept_behaviors(table: pa.Table, config: PrepareConfig) -> dict[str, int]:
    """Rows per behaviour value that cleaning will drop as not kept (for the console summary)."""
    counts = pc.value_counts(table.column("behavior")).to_pylist()
    kept = set(config.behaviors)
    return {c["values"]: int(c["counts"]) for c in counts if c["values"] not in kept}


def prepare_from_source(
    source: Literal["movielens", "taobao", "generic"],
    input_path: Path,
    output: Path,
    *,
    config: PrepareConfig | None = None,
    engine: str = "duckdb",
    spark_master: str = "local[2]",
    target: Literal["test", "valid"] | None = None,
    column_map: Mapping[str, str | int] | None = None,
    log_format: LogFormat | None = None,
    views: Sequence[str] | None = None,
    walks_per_node: int | None = None,
    memory_limit: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Adapter + ``prepare_dataset``: raw log of a known format -> dataset folder; returns ``output``.

    ``config`` defaults to ``preset(source)``; ``target``, ``views`` and ``walks_per_node`` override it
    when given. An empty train or test split is refused with the option to change. String ids are
    stored as ``labels/<view>.parquet`` (``labels/user.parquet`` for users).
    """
    if memory_limit:
        check_memory_limit(memory_limit)  # before the adapter reads the whole log
    if config is None:
        config = preset(source)
    overrides: dict[str, Any] = {}
    if target is not None:
        overrides["target"] = target
    if views is not None:
        overrides["views"] = tuple(views)
    if walks_per_node is not None:
        overrides["walks_per_node"] = walks_per_node
    if overrides:
        config = config.replace(**overrides)
    _check_behavior_map(log_format, config)
    result = read_source(source, input_path, column_map=column_map, log_format=log_format)
    # The adapter names labels by canonical column; the item column is the config's first view.
    names = {"item": config.item_view}
    labels = {names.get(k, k): t for k, t in result.labels.items()}
    labels = {k: t for k, t in labels.items() if k in (*config.views, "user")}
    extra: dict[str, Any] = {
        "input_notes": result.notes,
        "behaviour_values_not_kept": _unkept_behaviors(result.table, config),
    }
    if log_format is not None:
        extra["log_format"] = log_format.to_dict()
    return prepare_dataset(
        result.table,
        output,
        config,
        engine=engine,
        spark_master=spark_master,
        memory_limit=memory_limit,
        bad_rows=result.bad_rows,
        inputs=result.inputs,
        overwrite=overwrite,
        labels=labels,
        filtered=result.filtered,
        require_test=True,
        extra=extra,
        titles=result.titles,
        listing=result.listing,
    )


#: Bad-row reasons that rewrite a row instead of dropping it.
_REWRITES = ("item with two",)


def drop_summary(manifest: Mapping[str, Any]) -> str:
    """One console line: events kept of rows read, and every dropped row counted by reason.

    ``kept 950 of 1,000 rows (train 900, test 50); dropped 50: behaviour not kept 30 (remove_from_cart),
    duplicate 10, bad timestamp 10; rewritten 1: item with two categories 1``.
    """
    counts = manifest["counts"]
    reasons: dict[str, int] = {}
    rewritten: dict[str, int] = {}
    for reason, n in ((manifest.get("bad_rows") or {}).get("bad") or {}).items():
        (rewritten if reason.startswith(_REWRITES) else reasons)[reason] = int(n)
    for key, n in manifest["dropped"].items():
        reasons[key.removeprefix("adapter: ").replace("_", " ")] = int(n)
    dropped = sum(reasons.values())
    unkept = manifest.get("behaviour_values_not_kept") or {}

    def label(reason: str) -> str:
        if reason == "behaviour not kept" and unkept:
            return f"{reason} {reasons[reason]:,} ({', '.join(sorted(unkept))})"
        return f"{reason} {reasons[reason]:,}"

    parts = [label(r) for r in sorted(reasons, key=lambda r: (-reasons[r], r)) if reasons[r]]
    line = (
        f"kept {counts['events']:,} of {counts['events'] + dropped:,} rows (train {counts['train_events']:,}, "
        f"test {counts['test_events']:,}); dropped {dropped:,}" + (f": {', '.join(parts)}" if parts else "")
    )
    if rewritten:
        line += f"; rewritten {sum(rewritten.values()):,}: " + ", ".join(
            f"{r} {n:,}" for r, n in sorted(rewritten.items())
        )
    return line


__all__ = [
    "drop_summary",
    "empty_split_message",
    "labels_path",
    "prepare_dataset",
    "prepare_from_source",
    "read_source",
    "walks_path",
]
