"""Adapters: raw logs (MovieLens, Taobao UserBehavior, generic CSV/Parquet) -> the canonical event table.

Canonical schema (one row per event)::

    user_id int64, item_id int64, timestamp int64 (unix s), behavior string,
    <view>_id int64 for every non-item view (null when unknown),
    optional dwell_s float64, rating float64, session_id int64 (app session id)

Every adapter returns an :class:`AdapterResult`: the table, a :class:`BadRowReport` (rows with a wrong
type, a missing id, or an item that maps to two values of a side view, counted by reason with
``file``/``line``/``value`` examples) and the labels of factorised string ids. Parsing is vectorised
with Arrow compute (no per-row Python); a row is counted once, under the first reason that hits it.
Rows with a bad field are dropped; an item with two categories keeps its most frequent one (ties: the
smallest id) and the rewritten rows are counted, never silently changed.
"""

from __future__ import annotations

import codecs
import gzip
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.dataset as pads

from offline.config import BadInputError

#: Examples kept per reason in a report (the counts are always complete).
EXAMPLES_PER_REASON = 5
REQUIRED = ("user_id", "item_id", "timestamp")
FLOAT_COLUMNS = ("dwell_s", "rating")
TAOBAO_BEHAVIORS = {"pv": "view", "cart": "cart", "fav": "fav", "buy": "buy"}

#: Bytes read at the start of a CSV file to recognise binary data or another encoding than UTF-8.
SNIFF_BYTES = 1 << 16
#: Compressions pyarrow undoes by file suffix that the sniffer cannot read (their files are not sniffed).
_OPAQUE_SUFFIXES = (".bz2", ".lz4", ".zst", ".zstd", ".br")

_INT_RE = r"^[+-]?[0-9]{1,18}$"
_FLOAT_RE = r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$"

REASON_MISSING = "missing value"
REASON_TYPE = "wrong type"
REASON_FIELDS = "wrong number of fields"
REASON_TWO_VALUES = "item with two {plural}"
REASON_BEHAVIOR = "unknown behaviour"


@dataclass
class BadRowReport:
    """Bad input rows counted by reason.

    ``total_rows`` is the number of data rows read; ``bad`` maps reason -> rows; ``examples`` holds up to
    ``EXAMPLES_PER_REASON`` dicts ``{file, line, column, value, reason}`` per reason (``line`` is the
    1-based line in a CSV file, or the 0-based row number in a Parquet input).
    """

    total_rows: int = 0
    bad: dict[str, int] = field(default_factory=dict)
    examples: list[dict[str, Any]] = field(default_factory=list)

    @property
    def bad_rows(self) -> int:
        return sum(self.bad.values())

    @property
    def share(self) -> float:
        return self.bad_rows / self.total_rows if self.total_rows else 0.0

    def add(self, reason: str, count: int, examples: Sequence[dict[str, Any]] = ()) -> None:
        """Count ``count`` rows under ``reason`` and keep the first examples."""
        if count <= 0:
            return
        self.bad[reason] = self.bad.get(reason, 0) + int(count)
        kept = sum(1 for e in self.examples if e["reason"] == reason)
        self.examples.extend(dict(e, reason=reason) for e in examples[: max(0, EXAMPLES_PER_REASON - kept)])

    def merge(self, other: BadRowReport) -> BadRowReport:
        """A new report with the rows, counts and examples of both."""
        out = BadRowReport(self.total_rows + other.total_rows, dict(self.bad), list(self.examples))
        for reason, n in other.bad.items():
            out.add(reason, n, [e for e in other.examples if e["reason"] == reason])
        return out

    def check(self, max_share: float) -> None:
        """Raise ``BadInputError`` (counts by reason and examples) when the bad share exceeds ``max_share``."""
        if self.share > max_share:
            detail = "; ".join(f"{reason}: {n}" for reason, n in sorted(self.bad.items()))
            first = self.examples[:3]
            raise BadInputError(
                f"{self.bad_rows} of {self.total_rows} input rows are bad ({self.share:.2%} > allowed "
                f"{max_share:.2%}): {detail}. Examples: {first}"
            )

    def to_dict(self) -> dict[str, Any]:
        return {
            "total_rows": self.total_rows,
            "bad_rows": self.bad_rows,
            "share": self.share,
            "bad": dict(sorted(self.bad.items())),
            "examples": self.examples,
        }


@dataclass
class AdapterResult:
    """Canonical events, the bad-row report, labels of factorised ids (``view -> Table(id, label)``),
    rows dropped on purpose by the adapter (``reason -> count``, e.g. low ratings) and the input files."""

    table: pa.Table
    bad_rows: BadRowReport
    labels: dict[str, pa.Table] = field(default_factory=dict)
    filtered: dict[str, int] = field(default_factory=dict)
    inputs: tuple[Path, ...] = ()


# ----------------------------------------------------------------------------------------------- parsing


def check_text(path: Path) -> None:
    """Raise ``BadInputError`` unless the first ``SNIFF_BYTES`` of ``path`` (gunzipped for ``.gz``) are
    UTF-8 text: a UTF-16/32 file, binary data or latin-1 bytes are refused with a message that says so,
    instead of a parse error about column counts. A bad byte further on is caught by the CSV reader."""
    if path.suffix.lower() in _OPAQUE_SUFFIXES:
        return
    try:
        with gzip.open(path, "rb") if path.suffix.lower() == ".gz" else open(path, "rb") as fh:
            head = fh.read(SNIFF_BYTES)
    except (OSError, EOFError) as exc:  # gzip.BadGzipFile is an OSError
        raise BadInputError(f"{path}: cannot be read: {exc}") from exc
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or b"\x00" in head:
        line = head[: max(head.find(b"\x00"), 0)].count(b"\n") + 1
        raise BadInputError(
            f"{path}: not UTF-8 text (a UTF-16/32 byte order mark or NUL bytes, first on line {line}: "
            "another encoding or binary data); re-encode it as UTF-8"
        )
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError as exc:
        line = head[: exc.start].count(b"\n") + 1
        raise BadInputError(
            f"{path}: not UTF-8 text: byte 0x{head[exc.start]:02x} on line {line} (latin-1 or binary "
            "data?); re-encode it as UTF-8"
        ) from None


def _read_csv_strings(
    path: Path, names: Sequence[str] | None, header: bool
) -> tuple[pa.Table, int, list[tuple[int, str]]]:
    """Read a CSV (optionally gzipped, UTF-8) with every column as string.

    Returns the table, the 1-based line number of its first data row, and ``(line, text)`` of the rows
    skipped for a wrong number of fields (line ``-1`` when the multi-threaded parser does not know it:
    the text identifies the row). Raises ``BadInputError`` when the file is not UTF-8 CSV.
    """
    check_text(path)
    skipped: list[tuple[int, str]] = []

    def on_invalid(row: Any) -> str:
        skipped.append((int(row.number) if row.number is not None else -1, str(row.text)[:200]))
        return "skip"

    read = pacsv.ReadOptions(
        column_names=list(names) if names else None, skip_rows=1 if header and names else 0
    )
    try:
        # the header alone gives the names; a short row in the first block must not fail the probe
        skip_all = pacsv.ParseOptions(invalid_row_handler=lambda row: "skip")
        probe = names if names is not None else pacsv.open_csv(path, parse_options=skip_all).schema.names
        convert = pacsv.ConvertOptions(
            column_types={c: pa.string() for c in probe},
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
        )
        table = pacsv.read_csv(
            path,
            read_options=read,
            parse_options=pacsv.ParseOptions(invalid_row_handler=on_invalid),
            convert_options=convert,
        )
    except (pa.ArrowInvalid, OSError) as exc:
        hint = "; the file is not UTF-8 text: re-encode it as UTF-8" if "UTF8" in str(exc) else ""
        raise BadInputError(f"{path}: cannot be read as CSV: {exc}{hint}") from exc
    return table, 2 if header else 1, skipped


class _Validator:
    """Accumulates the bad-row mask of one table while columns are parsed (one reason per row)."""

    def __init__(self, table: pa.Table, file: Path, first_line: int, report: BadRowReport) -> None:
        self.table = table
        self.file = str(file)
        self.first_line = first_line
        self.report = report
        self.bad = np.zeros(table.num_rows, dtype=bool)

    def flag(self, mask: np.ndarray, reason: str, column: str, values: pa.Array | pa.ChunkedArray) -> None:
        new = mask & ~self.bad
        idx = np.flatnonzero(new)
        if len(idx) == 0:
            return
        shown = idx[:EXAMPLES_PER_REASON]
        raw = values.take(pa.array(shown)).to_pylist()
        examples = [
            {"file": self.file, "line": int(i) + self.first_line, "column": column, "value": v}
            for i, v in zip(shown.tolist(), raw, strict=True)
        ]
        self.report.add(reason, len(idx), examples)
        self.bad |= new

    def integer(self, name: str, column: str | None = None, required: bool = True) -> pa.Array:
        """Parse column ``name`` as int64 (nulls where missing/bad); flags bad rows."""
        col = self.table.column(name)
        if pa.types.is_integer(col.type):
            if required:
                self.flag(_np_mask(col.is_null()), REASON_MISSING, column or name, col)
            return pc.cast(col, pa.int64()).combine_chunks()
        if pa.types.is_floating(col.type):
            integral = pc.fill_null(pc.equal(pc.floor(col), col), False)
            if required:
                self.flag(_np_mask(col.is_null()), REASON_MISSING, column or name, col)
            self.flag(
                _np_mask(pc.and_(pc.invert(integral), pc.invert(col.is_null()))), REASON_TYPE, name, col
            )
            return pc.cast(pc.if_else(integral, col, None), pa.int64()).combine_chunks()
        text = pc.utf8_trim_whitespace(pc.cast(col, pa.string()))
        missing = pc.fill_null(pc.equal(text, ""), True)
        ok = pc.fill_null(pc.match_substring_regex(text, _INT_RE), False)
        if required:
            self.flag(_np_mask(missing), REASON_MISSING, column or name, col)
        self.flag(_np_mask(pc.and_(pc.invert(ok), pc.invert(missing))), REASON_TYPE, column or name, col)
        return pc.cast(pc.if_else(ok, text, None), pa.int64()).combine_chunks()

    def floating(self, name: str, required: bool = False) -> pa.Array:
        """Parse column ``name`` as float64 (null where missing or bad); flags bad rows."""
        col = self.table.column(name)
        if pa.types.is_integer(col.type) or pa.types.is_floating(col.type):
            if required:
                self.flag(_np_mask(col.is_null()), REASON_MISSING, name, col)
            return pc.cast(col, pa.float64()).combine_chunks()
        text = pc.utf8_trim_whitespace(pc.cast(col, pa.string()))
        missing = pc.fill_null(pc.equal(text, ""), True)
        ok = pc.fill_null(pc.match_substring_regex(text, _FLOAT_RE), False)
        if required:
            self.flag(_np_mask(missing), REASON_MISSING, name, col)
        self.flag(_np_mask(pc.and_(pc.invert(ok), pc.invert(missing))), REASON_TYPE, name, col)
        return pc.cast(pc.if_else(ok, text, None), pa.float64()).combine_chunks()

    def good(self) -> pa.Array:
        return pa.array(~self.bad)


def _np_mask(arr: pa.Array | pa.ChunkedArray) -> np.ndarray:
    return np.asarray(pc.fill_null(arr, False).to_numpy(zero_copy_only=False), dtype=bool)


def resolve_item_attributes(
    table: pa.Table,
    side_columns: Sequence[str],
    report: BadRowReport,
    file: Path | None = None,
    first_line: int = 0,
) -> pa.Table:
    """Give every item one value per side column: its most frequent one (ties: smallest id).

    Rows of an item seen with two or more values are rewritten to the kept value and counted under
    ``"item with two <view plural>"`` (e.g. ``"item with two categories"``) with one example per
    conflicting item (``value`` lists the counts). ``first_line`` turns row numbers into file lines;
    it is exact only when no input row was dropped before this step.
    Vectorised: a group-by on ``(item, value)`` then a sorted lookup.
    """
    for col in side_columns:
        if col not in table.column_names:
            continue
        known = table.filter(pc.is_valid(table.column(col)))
        pairs = known.group_by(["item_id", col]).aggregate([([], "count_all")])
        if pairs.num_rows == 0:  # no row with a value (or no row at all): nothing can conflict
            continue
        items = pairs.column("item_id").to_numpy()
        values = pairs.column(col).to_numpy()
        counts = pairs.column("count_all").to_numpy()
        order = np.lexsort((values, -counts, items))
        items, values, counts = items[order], values[order], counts[order]
        first = np.r_[True, items[1:] != items[:-1]]
        n_values = np.diff(np.r_[np.flatnonzero(first), len(items)])
        conflict_items = items[first][n_values > 1]
        if len(conflict_items) == 0:
            continue
        kept = values[first][n_values > 1]
        item_col = table.column("item_id").to_numpy()
        val = table.column(col)
        val_np = pc.fill_null(val, -1).to_numpy()
        pos = np.minimum(np.searchsorted(conflict_items, item_col), len(conflict_items) - 1)
        hit = (conflict_items[pos] == item_col) & pc.is_valid(val).to_numpy(zero_copy_only=False)
        rewrite = hit & (val_np != kept[pos])
        view = col.removesuffix("_id")
        examples = []
        for item, value in zip(conflict_items[:EXAMPLES_PER_REASON].tolist(), kept.tolist(), strict=False):
            sel = items == item
            seen = dict(zip(values[sel].tolist(), counts[sel].tolist(), strict=True))
            row = int(np.flatnonzero(rewrite & (item_col == item))[0])
            examples.append(
                {
                    "file": str(file) if file else None,
                    "line": row + first_line,
                    "column": col,
                    "value": f"item {item}: {view} counts {seen}, kept {value}",
                }
            )
        plural = f"{view[:-1]}ies" if view.endswith("y") else f"{view}s"
        report.add(REASON_TWO_VALUES.format(plural=plural), int(rewrite.sum()), examples)
        fixed = np.where(rewrite, kept[pos], val_np)
        table = table.set_column(
            table.column_names.index(col),
            col,
            pa.array(fixed, pa.int64(), mask=~pc.is_valid(val).to_numpy(False)),
        )
    return table


def _canonical(columns: Mapping[str, pa.Array | pa.ChunkedArray], good: pa.Array | None = None) -> pa.Table:
    """The good rows of ``columns`` in canonical column order (required, behaviour, then the rest sorted)."""
    table = pa.table(dict(columns))
    if good is not None:
        table = table.filter(good)
    rest = sorted(c for c in table.column_names if c not in REQUIRED and c != "behavior")
    return table.select([*REQUIRED, "behavior", *rest])


def _fields_report(report: BadRowReport, file: Path, skipped: list[tuple[int, str]]) -> None:
    report.total_rows += len(skipped)
    report.add(
        REASON_FIELDS,
        len(skipped),
        [{"file": str(file), "line": n, "column": None, "value": text} for n, text in skipped],
    )


def factorize(values: pa.Array | pa.ChunkedArray) -> tuple[pa.Array, pa.Table]:
    """Map strings to int64 ids ``0..n-1`` in sorted label order; returns (ids, Table(id, label))."""
    labels = pc.sort_indices(pc.unique(values).drop_null())
    uniq = pc.unique(values).drop_null().take(labels)
    ids = pc.cast(pc.index_in(values, value_set=uniq), pa.int64())
    return ids, pa.table({"id": pa.array(np.arange(len(uniq), dtype=np.int64)), "label": uniq})


# ---------------------------------------------------------------------------------------------- adapters


def read_movielens(ratings_csv: Path, movies_csv: Path, min_rating: float = 3.0) -> AdapterResult:
    """MovieLens ``ratings.csv`` + ``movies.csv`` -> canonical events (behaviour ``rating``).

    Ratings below ``min_rating`` are dropped (appendix A.1) and counted in ``filtered``. The category of
    a movie is its whole genre string (e.g. ``"Comedy|Romance"``) factorised to int64 in sorted label
    order; ``labels["category"]`` holds ``(id, label)``. A rated movie absent from ``movies.csv`` keeps a
    null category.
    """
    ratings_csv, movies_csv = Path(ratings_csv), Path(movies_csv)
    report = BadRowReport()
    raw, first_line, skipped = _read_csv_strings(ratings_csv, None, header=True)
    missing = {"userId", "movieId", "rating", "timestamp"} - set(raw.column_names)
    if missing:
        raise BadInputError(f"{ratings_csv}: missing columns {sorted(missing)} (found {raw.column_names})")
    report.total_rows = raw.num_rows
    _fields_report(report, ratings_csv, skipped)
    v = _Validator(raw, ratings_csv, first_line, report)
    cols = {
        "user_id": v.integer("userId"),
        "item_id": v.integer("movieId"),
        "rating": v.floating("rating", required=True),
        "timestamp": v.integer("timestamp"),
    }
    table = pa.table(cols).filter(v.good())

    movies, m_first, m_skipped = _read_csv_strings(movies_csv, None, header=True)
    if {"movieId", "genres"} - set(movies.column_names):
        raise BadInputError(f"{movies_csv}: needs columns movieId, genres (found {movies.column_names})")
    m_report = BadRowReport(total_rows=movies.num_rows)
    _fields_report(m_report, movies_csv, m_skipped)
    mv = _Validator(movies, movies_csv, m_first, m_report)
    movie_ids = mv.integer("movieId")
    genres = movies.column("genres").combine_chunks()
    keep = mv.good()
    movie_ids, genres = movie_ids.filter(keep), genres.filter(keep)
    genre_ids, labels = factorize(genres)
    # A duplicated movieId in movies.csv: the first row wins (index_in returns the first match).
    pos = pc.index_in(table.column("item_id"), value_set=movie_ids)
    category = pc.take(genre_ids, pos)

    low = pc.fill_null(pc.less(table.column("rating"), min_rating), False)
    n_low = int(pc.sum(low).as_py() or 0)
    table = table.append_column("category_id", category).filter(pc.invert(low))
    table = table.append_column(
        "behavior", pa.array(np.full(table.num_rows, "rating", dtype=object), pa.string())
    )
    report = report.merge(m_report)
    canonical = _canonical({c: table.column(c) for c in table.column_names})
    table = resolve_item_attributes(canonical, ["category_id"], report, ratings_csv)
    return AdapterResult(
        table=table,
        bad_rows=report,
        labels={"category": labels},
        filtered={f"rating below {min_rating:g}": n_low},
        inputs=(ratings_csv, movies_csv),
    )


def read_taobao(csv_path: Path) -> AdapterResult:
    """Taobao UserBehavior (headerless ``user,item,category,behavior,timestamp``, optionally gzipped).

    Behaviours ``pv, cart, fav, buy`` become ``view, cart, fav, buy``; any other value is a bad row
    (``"unknown behaviour"``). An item seen with two categories keeps its most frequent one (reported).
    """
    csv_path = Path(csv_path)
    names = ["user", "item", "category", "behavior", "timestamp"]
    raw, first_line, skipped = _read_csv_strings(csv_path, names, header=False)
    report = BadRowReport(total_rows=raw.num_rows)
    _fields_report(report, csv_path, skipped)
    v = _Validator(raw, csv_path, first_line, report)
    cols = {
        "user_id": v.integer("user"),
        "item_id": v.integer("item"),
        "category_id": v.integer("category"),
        "timestamp": v.integer("timestamp"),
    }
    behavior_raw = pc.utf8_trim_whitespace(raw.column("behavior"))
    known = pa.array(list(TAOBAO_BEHAVIORS))
    idx = pc.index_in(behavior_raw, value_set=known)
    v.flag(_np_mask(pc.is_null(idx)), REASON_BEHAVIOR, "behavior", raw.column("behavior"))
    cols["behavior"] = pc.take(pa.array(list(TAOBAO_BEHAVIORS.values())), idx)
    table = _canonical(cols, v.good())
    # Bad rows are rare; when there are none the example's line number is exact.
    table = resolve_item_attributes(table, ["category_id"], report, csv_path, first_line)
    return AdapterResult(table=table, bad_rows=report, inputs=(csv_path,))


def read_generic(
    path: Path, column_map: Mapping[str, str], fmt: Literal["csv", "parquet"] | None = None
) -> AdapterResult:
    """A CSV or Parquet file (or a folder of Parquet files) with a column mapping ``canonical -> source``.

    ``user_id``, ``item_id`` and ``timestamp`` (unix s, integer) must be mapped; ``behavior`` defaults
    to ``"view"`` when unmapped; any other canonical ``<view>_id``, ``session_id`` (int64) or
    ``dwell_s``/``rating`` (float64) may be mapped. ``fmt`` defaults from the file suffix.
    """
    path = Path(path)
    missing = [c for c in REQUIRED if c not in column_map]
    if missing:
        raise BadInputError(f"column_map must map {missing} (got {dict(column_map)})")
    for canon in column_map:
        if canon not in (*REQUIRED, "behavior", *FLOAT_COLUMNS) and not canon.endswith("_id"):
            raise BadInputError(
                f"column_map key {canon!r} is not canonical: use user_id, item_id, timestamp, behavior, "
                "dwell_s, rating, session_id or <view>_id"
            )
    if fmt is None:
        fmt = "parquet" if path.is_dir() or path.suffix == ".parquet" else "csv"
    if fmt not in ("csv", "parquet"):
        raise BadInputError(f"unknown format {fmt!r}; valid: csv, parquet")
    sources = list(dict.fromkeys(column_map.values()))
    if fmt == "csv":
        raw, first_line, skipped = _read_csv_strings(path, None, header=True)
    else:
        raw = pads.dataset(path, format="parquet").to_table()
        first_line, skipped = 0, []
    absent = [s for s in sources if s not in raw.column_names]
    if absent:
        raise BadInputError(f"{path}: mapped source columns {absent} not found (found {raw.column_names})")
    report = BadRowReport(total_rows=raw.num_rows)
    _fields_report(report, path, skipped)
    v = _Validator(raw, path, first_line, report)
    cols: dict[str, pa.Array] = {}
    for canon, source in column_map.items():
        if canon == "behavior":
            text = pc.utf8_trim_whitespace(pc.cast(raw.column(source), pa.string()))
            v.flag(
                _np_mask(pc.fill_null(pc.equal(text, ""), True)), REASON_MISSING, source, raw.column(source)
            )
            cols[canon] = text.combine_chunks()
        elif canon in FLOAT_COLUMNS:
            cols[canon] = v.floating(source)
        else:
            cols[canon] = v.integer(source, required=canon in REQUIRED)
    if "behavior" not in cols:
        cols["behavior"] = pa.array(np.full(raw.num_rows, "view", dtype=object), pa.string())
    table = _canonical(cols, v.good())
    side = [
        c for c in table.column_names if c.endswith("_id") and c not in ("user_id", "item_id", "session_id")
    ]
    table = resolve_item_attributes(table, side, report, path)
    return AdapterResult(table=table, bad_rows=report, inputs=(path,))
