"""Adapters: raw logs (MovieLens, Taobao UserBehavior, generic CSV/Parquet) -> the canonical event table.

Canonical schema (one row per event)::

    user_id int64, item_id int64, timestamp int64 (unix s), behavior string,
    <view>_id int64 for every non-item view (null when unknown),
    optional dwell_s float64, rating float64, session_id int64 (app session id)

Every adapter returns an :class:`AdapterResult`: the table, a :class:`BadRowReport` (rows with a wrong
type, a missing id, a bad timestamp, or an item that maps to two values of a side view, counted by
reason with ``file``/``line``/``value`` examples) and the labels of factorised string ids: an id
column of the generic adapter with one value that is not an int64 integer is a string column, and
all its values become dense ids ``0..n-1`` in sorted label order (``core.id_labels``). Parsing is vectorised
with Arrow compute (no per-row Python); a row is counted once, under the first reason that hits it.
Rows with a bad field are dropped; an item with two categories keeps its most frequent one (ties: the
smallest id) and the rewritten rows are counted, never silently changed.
"""

from __future__ import annotations

import codecs
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.dataset as pads

from core.titles import clean_titles
from offline.data.config import DELIMITERS, BadInputError, LogFormat
from offline.data.timeparse import ACCEPTED, describe, is_int64_text, parse_timestamps

#: Examples kept per reason in a report (the counts are always complete).
EXAMPLES_PER_REASON = 5
REQUIRED = ("user_id", "item_id", "timestamp")
FLOAT_COLUMNS = ("dwell_s", "rating")
TAOBAO_BEHAVIORS = {"pv": "view", "cart": "cart", "fav": "fav", "buy": "buy"}

#: Bytes read at the start of a CSV file to recognise binary data or another encoding than UTF-8.
SNIFF_BYTES = 1 << 16

_FLOAT_RE = r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$"

REASON_MISSING = "missing value"
REASON_TYPE = "wrong type"
REASON_FIELDS = "wrong number of fields"
REASON_TWO_VALUES = "item with two {plural}"
REASON_BEHAVIOR = "unknown behaviour"
REASON_TIME = "bad timestamp"


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
    #: reason -> what would fix it (e.g. the timestamp formats accepted), shown when the job fails.
    hints: dict[str, str] = field(default_factory=dict)

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
        out = BadRowReport(
            self.total_rows + other.total_rows, dict(self.bad), list(self.examples), self.hints | other.hints
        )
        for reason, n in other.bad.items():
            out.add(reason, n, [e for e in other.examples if e["reason"] == reason])
        return out

    def check(self, max_share: float) -> None:
        """Raise ``BadInputError`` (counts by reason and examples) when the bad share exceeds ``max_share``."""
        if self.share > max_share:
            detail = "; ".join(f"{reason}: {n}" for reason, n in sorted(self.bad.items()))
            first = "; ".join(_example_text(e) for e in self.examples[:3])
            hints = "".join(f". {r}: {h}" for r, h in sorted(self.hints.items()) if r in self.bad)
            raise BadInputError(
                f"{self.bad_rows} of {self.total_rows} input rows are bad ({self.share:.2%} > allowed "
                f"{max_share:.2%}): {detail}. Examples: {first}{hints}"
            )

    def to_dict(self) -> dict[str, Any]:
        return {
            "total_rows": self.total_rows,
            "bad_rows": self.bad_rows,
            "share": self.share,
            "bad": dict(sorted(self.bad.items())),
            "examples": self.examples,
            "hints": dict(sorted(self.hints.items())),
        }


def _example_text(example: Mapping[str, Any]) -> str:
    """``file line 3, column 'ts': '4.5' (wrong type)``: one bad row, readable in a one-line error."""
    where = f"{example.get('file')} line {example.get('line')}"
    if example.get("column") is not None:
        where += f", column {example['column']!r}"
    return f"{where}: {example.get('value')!r} ({example.get('reason')})"


@dataclass
class AdapterResult:
    """Canonical events, the bad-row report, labels of factorised ids (``view -> Table(id, label)``),
    rows dropped on purpose by the adapter (``reason -> count``, e.g. low ratings), the input files and
    notes on how the input was read (the MovieLens format, string id columns, the timestamp format)."""

    table: pa.Table
    bad_rows: BadRowReport
    labels: dict[str, pa.Table] = field(default_factory=dict)
    filtered: dict[str, int] = field(default_factory=dict)
    inputs: tuple[Path, ...] = ()
    notes: list[str] = field(default_factory=list)
    #: ``item_id, title`` of the catalogue when the source has titles (``core.titles``), else None
    titles: pa.Table | None = None
    #: ``item_id, <view>_id...`` of every item the source lists, behaviour or not (MovieLens movies);
    #: None when the log is the only list of items (``offline.data.catalogue``)
    listing: pa.Table | None = None


# ----------------------------------------------------------------------------------------------- parsing


def _open_text_head(path: Path) -> bytes:
    """The first ``SNIFF_BYTES`` of ``path``, decompressed by suffix (``.gz``, ``.zst``, ``.bz2``, ...)."""
    try:
        with pa.input_stream(str(path), compression="detect") as fh:
            return bytes(fh.read(SNIFF_BYTES))
    except (OSError, EOFError, pa.ArrowException) as exc:
        raise BadInputError(f"{path}: cannot be read: {exc}") from exc


def check_text(path: Path, encoding: str = "utf-8") -> None:
    """Raise ``BadInputError`` unless the first ``SNIFF_BYTES`` of ``path`` (decompressed) are text in
    ``encoding``: a UTF-16/32 file, binary data or latin-1 bytes in a UTF-8 file are refused with a
    message that says so, instead of a parse error about column counts. A bad byte further on is caught
    by the CSV reader."""
    head = _open_text_head(path)
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or b"\x00" in head:
        line = head[: max(head.find(b"\x00"), 0)].count(b"\n") + 1
        raise BadInputError(
            f"{path}: not UTF-8 text (a UTF-16/32 byte order mark or NUL bytes, first on line {line}: "
            "another encoding or binary data); re-encode it as UTF-8"
        )
    if codecs.lookup(encoding).name != "utf-8":
        return  # single-byte encodings decode any byte
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError as exc:
        line = head[: exc.start].count(b"\n") + 1
        raise BadInputError(
            f"{path}: not UTF-8 text: byte 0x{head[exc.start]:02x} on line {line} (latin-1 or binary "
            "data?); re-encode it as UTF-8 or pass its encoding (--encoding latin-1)"
        ) from None


def head_lines(path: Path, encoding: str = "utf-8", n: int = 2) -> list[str]:
    """The first ``n`` non-empty lines of a (compressed) text file, for sniffing its shape."""
    text = _open_text_head(path).decode(encoding, errors="replace")
    return [line.rstrip("\r") for line in text.split("\n") if line.strip()][:n]


def sniff_delimiter(line: str) -> str:
    """The most frequent of ``DELIMITERS`` in ``line`` (``,`` when none occurs)."""
    counts = {d: line.count(d) for d in DELIMITERS}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def _read_csv_strings(
    path: Path,
    names: Sequence[str] | None,
    header: bool,
    *,
    delimiter: str = ",",
    encoding: str = "utf-8",
    quoting: bool = True,
) -> tuple[pa.Table, int, list[tuple[int, str]]]:
    """Read a CSV (optionally compressed) with every column as string.

    ``names`` name the columns (the header row, if any, is skipped); without names a headerless file
    gets ``f0, f1, ...``. Returns the table, the 1-based line number of its first data row, and
    ``(line, text)`` of the rows skipped for a wrong number of fields (line ``-1`` when the
    multi-threaded parser does not know it: the text identifies the row). Raises ``BadInputError`` when
    the file is not text in ``encoding`` or not CSV.
    """
    check_text(path, encoding)
    skipped: list[tuple[int, str]] = []

    def on_invalid(row: Any) -> str:
        skipped.append((int(row.number) if row.number is not None else -1, str(row.text)[:200]))
        return "skip"

    read = pacsv.ReadOptions(
        column_names=list(names) if names else None,
        skip_rows=1 if header and names else 0,
        autogenerate_column_names=not header and not names,
        encoding=encoding,
    )
    parse = {"delimiter": delimiter, "quote_char": '"' if quoting else False}
    try:
        # the header alone gives the names; a short row in the first block must not fail the probe
        skip_all = pacsv.ParseOptions(invalid_row_handler=lambda row: "skip", **parse)
        probe = (
            names
            if names is not None
            else pacsv.open_csv(path, read_options=read, parse_options=skip_all).schema.names
        )
        convert = pacsv.ConvertOptions(
            column_types={c: pa.string() for c in probe},
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
        )
        table = pacsv.read_csv(
            path,
            read_options=read,
            parse_options=pacsv.ParseOptions(invalid_row_handler=on_invalid, **parse),
            convert_options=convert,
        )
    except (pa.ArrowInvalid, OSError) as exc:
        hint = (
            "; the file is not UTF-8 text: re-encode it as UTF-8 or pass its encoding (--encoding latin-1)"
            if "UTF8" in str(exc)
            else ""
        )
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
        ok = is_int64_text(text)
        if required:
            self.flag(_np_mask(missing), REASON_MISSING, column or name, col)
        self.flag(_np_mask(pc.and_(pc.invert(ok), pc.invert(missing))), REASON_TYPE, column or name, col)
        return pc.cast(pc.if_else(ok, text, None), pa.int64()).combine_chunks()

    def identifier(self, name: str, required: bool = True) -> tuple[pa.Array, pa.Array | None]:
        """Parse id column ``name``: int64 ids as they are, or, when one value is not an int64 integer,
        every value as a string label -> dense id; returns ``(ids, labels or None)``."""
        col = self.table.column(name)
        if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
            return self.integer(name, required=required), None
        text = pc.utf8_trim_whitespace(pc.cast(col, pa.string()))
        missing = pc.fill_null(pc.equal(text, ""), True)
        if bool(pc.all(pc.or_(is_int64_text(text), missing)).as_py()):
            return self.integer(name, required=required), None
        if required:
            self.flag(_np_mask(missing), REASON_MISSING, name, col)
        ids, labels = factorize(pc.if_else(missing, None, text))
        return ids.combine_chunks() if isinstance(ids, pa.ChunkedArray) else ids, labels.column("label")

    def timestamp(self, name: str, time_format: str, timezone: str) -> tuple[pa.Array, str]:
        """Parse column ``name`` to unix seconds (``offline.data.timeparse``); flags missing values and
        values that do not parse (reason ``bad timestamp``, with the accepted formats as a hint)."""
        col = self.table.column(name).combine_chunks()
        seconds, kind = parse_timestamps(col, time_format, timezone)
        missing = pc.is_null(col)
        if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
            missing = pc.fill_null(pc.equal(pc.utf8_trim_whitespace(col), ""), True)
        self.flag(_np_mask(missing), REASON_MISSING, name, col)
        before = self.report.bad.get(REASON_TIME, 0)
        self.flag(_np_mask(pc.and_(seconds.is_null(), pc.invert(missing))), REASON_TIME, name, col)
        if self.report.bad.get(REASON_TIME, 0) > before:
            how = "auto-detected" if time_format == "auto" else "--time-format"
            self.report.hints[REASON_TIME] = (
                f"column {name!r} was read as {describe(kind, timezone)} ({how}); {ACCEPTED}"
            )
        return seconds, kind

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


#: The 19 genre flags of MovieLens 100K ``u.item``, in file order (``u.genre`` overrides when present).
ML100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
    "War", "Western",
)  # fmt: skip
MOVIELENS_FILES = {
    "latest": ("ratings.csv", "movies.csv"),
    "1m": ("ratings.dat", "movies.dat"),
    "100k": ("u.data", "u.item"),
}


def movielens_files(path: Path) -> tuple[str, Path, Path]:
    """``(format, ratings file, movies file)`` of a MovieLens release: a folder holding ``ratings.csv`` +
    ``movies.csv`` (ml-latest, 20M, 25M), ``ratings.dat`` + ``movies.dat`` (1M, 10M) or ``u.data`` +
    ``u.item`` (100K), or one of those ratings files (its movies file is read from the same folder)."""
    path = Path(path)
    if path.is_file():
        for kind, (ratings, movies) in MOVIELENS_FILES.items():
            if path.name == ratings or (kind == "1m" and path.suffix == ".dat"):
                return kind, path, path.parent / movies
        return "latest", path, path.parent / "movies.csv"
    for kind, (ratings, movies) in MOVIELENS_FILES.items():
        if (path / ratings).exists():
            return kind, path / ratings, path / movies
    expected = "; ".join(f"{r} + {m} ({k})" for k, (r, m) in MOVIELENS_FILES.items())
    raise BadInputError(f"{path}: no MovieLens ratings file; expected {expected}")


def _guess_encoding(path: Path) -> str:
    """UTF-8 when the whole (small) file decodes as UTF-8, else latin-1 (MovieLens 100K and 1M)."""
    try:
        Path(path).read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        return "latin-1"
    return "utf-8"


def _read_dat(path: Path, names: Sequence[str], encoding: str) -> tuple[pa.Table, BadRowReport]:
    """A ``::``-separated MovieLens 1M/10M file as string columns ``names`` (rows with another number
    of fields are bad rows, named by line)."""
    raw, first_line, skipped = _read_csv_strings(
        path, ["line"], header=False, delimiter="\x1f", encoding=encoding, quoting=False
    )
    report = BadRowReport(total_rows=raw.num_rows)
    _fields_report(report, path, skipped)
    parts = pc.split_pattern(raw.column("line"), "::", max_splits=len(names) - 1)
    ok = pc.equal(pc.list_value_length(parts), len(names))
    v = _Validator(raw, path, first_line, report)
    v.flag(_np_mask(pc.invert(ok)), REASON_FIELDS, "line", raw.column("line"))
    parts = pc.if_else(ok, parts, None)
    cols = {n: pc.fill_null(pc.list_element(parts, i), "") for i, n in enumerate(names)}
    return pa.table(cols).filter(v.good()), report


def _movielens_ratings(kind: str, ratings: Path) -> tuple[pa.Table, BadRowReport]:
    """Ratings as canonical columns ``user_id, item_id, rating, timestamp`` (bad rows dropped)."""
    if kind == "1m":
        raw, report = _read_dat(ratings, ["userId", "movieId", "rating", "timestamp"], "utf-8")
        first_line = 1  # lines are exact only without bad rows: dropped ones shift them
    else:
        header = kind == "latest"
        names = None if header else ["userId", "movieId", "rating", "timestamp"]
        raw, first_line, skipped = _read_csv_strings(
            ratings, names, header=header, delimiter="," if header else "\t"
        )
        missing = {"userId", "movieId", "rating", "timestamp"} - set(raw.column_names)
        if missing:
            raise BadInputError(f"{ratings}: missing columns {sorted(missing)} (found {raw.column_names})")
        report = BadRowReport(total_rows=raw.num_rows)
        _fields_report(report, ratings, skipped)
    v = _Validator(raw, ratings, first_line, report)
    cols = {
        "user_id": v.integer("userId"),
        "item_id": v.integer("movieId"),
        "rating": v.floating("rating", required=True),
        "timestamp": v.integer("timestamp"),
    }
    return pa.table(cols).filter(v.good()), report


def _movielens_movies(kind: str, movies: Path) -> tuple[pa.Array, pa.Array, pa.Array | None, BadRowReport]:
    """``(movie ids, genre strings, titles or None, report)``; a 100K movie's genre string joins its
    flagged genres with ``|`` in ``u.genre`` order, as the other releases write them (``Comedy|Romance``)."""
    if kind == "1m":
        raw, report = _read_dat(movies, ["movieId", "title", "genres"], _guess_encoding(movies))
        first_line = 1
    elif kind == "100k":
        genres_file = movies.parent / "u.genre"
        names = list(ML100K_GENRES)
        if genres_file.exists():
            rows = [r.split("|") for r in genres_file.read_text("latin-1").splitlines() if "|" in r]
            names = [name for name, _ in sorted(rows, key=lambda r: int(r[1]))]
        flags = [f"g{i}" for i in range(len(names))]
        raw, first_line, skipped = _read_csv_strings(
            movies,
            ["movieId", "title", "release", "video", "url", *flags],
            header=False,
            delimiter="|",
            encoding=_guess_encoding(movies),
            quoting=False,
        )
        report = BadRowReport(total_rows=raw.num_rows)
        _fields_report(report, movies, skipped)
        flagged = [
            pc.if_else(pc.equal(raw.column(f).combine_chunks(), "1"), name, None)
            for f, name in zip(flags, names, strict=True)
        ]
        # A leading all-null input shortens the result (pyarrow 26), so lead with "" and cut its "|".
        lead = pa.array(np.full(raw.num_rows, "", dtype=object), pa.string())
        joined = pc.binary_join_element_wise(lead, *flagged, "|", null_handling="skip")
        raw = raw.append_column("genres", pc.utf8_slice_codeunits(joined, 1))
    else:
        raw, first_line, skipped = _read_csv_strings(movies, None, header=True)
        if {"movieId", "genres"} - set(raw.column_names):
            raise BadInputError(f"{movies}: needs columns movieId, genres (found {raw.column_names})")
        report = BadRowReport(total_rows=raw.num_rows)
        _fields_report(report, movies, skipped)
    v = _Validator(raw, movies, first_line, report)
    movie_ids = v.integer("movieId")
    genres = raw.column("genres").combine_chunks()
    keep = v.good()
    titles = raw.column("title").combine_chunks().filter(keep) if "title" in raw.column_names else None
    return movie_ids.filter(keep), genres.filter(keep), titles, report


def read_movielens(
    ratings_csv: Path, movies_csv: Path, min_rating: float = 3.0, kind: str | None = None
) -> AdapterResult:
    """MovieLens ratings + movies -> canonical events (behaviour ``rating``).

    ``kind`` is ``latest`` (``ratings.csv``/``movies.csv``), ``1m`` (``::``-separated ``.dat``, also
    10M) or ``100k`` (``u.data``/``u.item`` with genre flags); default: from the file name
    (``movielens_files``). Ratings below ``min_rating`` are dropped (appendix A.1) and counted in
    ``filtered``. The category of a movie is its whole genre string (e.g. ``"Comedy|Romance"``)
    factorised to int64 in sorted label order; ``labels["category"]`` holds ``(id, label)``. A rated
    movie absent from the movies file keeps a null category. The movies' titles come back in ``titles``
    and every movie with its genre id in ``listing`` (unrated ones included).
    """
    ratings_csv, movies_csv = Path(ratings_csv), Path(movies_csv)
    if kind is None:
        kind = movielens_files(ratings_csv)[0]
    if not movies_csv.exists():
        raise BadInputError(f"{movies_csv}: not found (the movies file of {ratings_csv.name})")
    table, report = _movielens_ratings(kind, ratings_csv)
    movie_ids, genres, titles, m_report = _movielens_movies(kind, movies_csv)
    genre_ids, labels = factorize(genres)
    # A duplicated movieId in the movies file: the first row wins (index_in returns the first match).
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
        notes=[f"MovieLens {kind} format: {ratings_csv.name} + {movies_csv.name}"],
        titles=clean_titles(movie_ids, titles) if titles is not None else None,
        listing=pa.table({"item_id": movie_ids, "category_id": genre_ids}),
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


def _source_column(ref: str | int, names: Sequence[str], path: Path, header: bool) -> str:
    """The table column a mapping value names: a header name, or a 1-based field position."""
    if _is_position(ref):
        pos = int(ref)
        if not 1 <= pos <= len(names):
            raise BadInputError(
                f"{path}: field {pos} does not exist (the file has {len(names)} fields, from 1)"
            )
        return names[pos - 1]
    if ref not in names:
        found = list(names) if header else f"{len(names)} unnamed fields"
        hint = (
            "; the file has no header row: map columns by position (user_id=1, from 1)"
            if not header
            else "; if the first row is data, map columns by position (user_id=1, from 1)"
        )
        raise BadInputError(f"{path}: mapped source column {ref!r} not found (found {found}){hint}")
    return str(ref)


def _is_position(ref: str | int) -> bool:
    return isinstance(ref, int) or ref.strip().isdigit()


def _auto_header(path: Path, log_format: LogFormat, delimiter: str, time_ref: str | int) -> bool:
    """Whether the file has a header row: yes when columns are mapped by name; when they are mapped by
    position, yes only if the first line's timestamp field does not parse and the second line's does."""
    if not _is_position(time_ref):
        return True
    lines = head_lines(path, log_format.encoding, 2)
    if not lines:
        return False
    pos = int(time_ref) - 1
    values = [
        (f[pos] if pos < len(f) else "").strip().strip('"') for f in (ln.split(delimiter) for ln in lines)
    ]
    parsed, _ = parse_timestamps(pa.array(values, pa.string()), log_format.time_format, log_format.timezone)
    ok = parsed.is_valid().to_pylist()
    return not ok[0] and (len(ok) < 2 or ok[1])


def read_generic(
    path: Path,
    column_map: Mapping[str, str | int],
    fmt: Literal["csv", "parquet"] | None = None,
    log_format: LogFormat | None = None,
) -> AdapterResult:
    """A CSV or Parquet file (or a folder of Parquet files) with a column mapping ``canonical -> source``.

    A source is a column name, or a 1-based field position (``3`` or ``"3"``). ``user_id``, ``item_id``
    and ``timestamp`` must be mapped; ``behavior`` defaults to ``"view"`` when unmapped; any other
    canonical ``<view>_id``, ``session_id`` or ``dwell_s``/``rating`` (float64) may be mapped. Id columns
    are int64 integers or strings (then mapped to dense ids; ``labels[<view>]``, ``labels["user"]``);
    timestamps, the delimiter, header, encoding and behaviour names follow ``log_format``
    (``offline.data.config.LogFormat``). ``fmt`` defaults from the file suffix (``.parquet`` or a folder:
    Parquet; else CSV, compressed by suffix: ``.gz``, ``.zst``, ``.bz2``).
    """
    path = Path(path)
    log_format = log_format or LogFormat()
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
        fmt = "parquet" if path.is_dir() or path.suffix in (".parquet", ".pq") else "csv"
    if fmt not in ("csv", "parquet"):
        raise BadInputError(f"unknown format {fmt!r}; valid: csv, parquet")
    notes: list[str] = []
    if fmt == "csv":
        check_text(path, log_format.encoding)
        delimiter = log_format.delimiter
        if delimiter is None:
            first = head_lines(path, log_format.encoding, 1)
            delimiter = sniff_delimiter(first[0] if first else "")
        header = log_format.header
        if header is None:
            header = _auto_header(path, log_format, delimiter, column_map["timestamp"])
        raw, first_line, skipped = _read_csv_strings(
            path, None, header=header, delimiter=delimiter, encoding=log_format.encoding
        )
        shown = {"\t": "tab"}.get(delimiter, delimiter)
        notes.append(
            f"CSV, delimiter {shown!r}, {'a header row' if header else 'no header row'}, {log_format.encoding}"
        )
    else:
        try:
            raw = pads.dataset(path, format="parquet").to_table()
        except (pa.ArrowInvalid, OSError) as exc:
            raise BadInputError(f"{path}: cannot be read as Parquet: {exc}") from exc
        first_line, skipped, header = 0, [], True
    sources = {
        canon: _source_column(ref, raw.column_names, path, header) for canon, ref in column_map.items()
    }
    report = BadRowReport(total_rows=raw.num_rows)
    _fields_report(report, path, skipped)
    v = _Validator(raw, path, first_line, report)
    cols: dict[str, pa.Array] = {}
    labels: dict[str, pa.Table] = {}
    for canon, source in sources.items():
        ref = column_map[canon]
        shown = f"field {int(ref)}" if _is_position(ref) else repr(source)
        if canon == "behavior":
            text = pc.utf8_trim_whitespace(pc.cast(raw.column(source), pa.string()))
            v.flag(
                _np_mask(pc.fill_null(pc.equal(text, ""), True)), REASON_MISSING, source, raw.column(source)
            )
            cols[canon] = _map_behaviors(text.combine_chunks(), log_format.behavior_map)
        elif canon == "timestamp":
            cols[canon], kind = v.timestamp(source, log_format.time_format, log_format.timezone)
            notes.append(f"timestamp {shown}: {describe(kind, log_format.timezone)}")
        elif canon in FLOAT_COLUMNS:
            cols[canon] = v.floating(source)
        else:
            cols[canon], names = v.identifier(source, required=canon in REQUIRED)
            if names is not None:
                notes.append(f"{canon} {shown}: {len(names)} string ids mapped to dense ids")
                if canon != "session_id":  # app session ids only group events, nobody looks them up
                    labels[canon.removesuffix("_id")] = pa.table(
                        {"id": pa.array(np.arange(len(names), dtype=np.int64)), "label": names}
                    )
    if "behavior" not in cols:
        cols["behavior"] = pa.array(np.full(raw.num_rows, "view", dtype=object), pa.string())
    table = _canonical(cols, v.good())
    side = [
        c for c in table.column_names if c.endswith("_id") and c not in ("user_id", "item_id", "session_id")
    ]
    table = resolve_item_attributes(table, side, report, path)
    return AdapterResult(table=table, bad_rows=report, labels=labels, inputs=(path,), notes=notes)


def _map_behaviors(text: pa.Array, mapping: Mapping[str, str]) -> pa.Array:
    """Source behaviour names -> canonical ones through ``mapping``; other values stay as they are."""
    if not mapping:
        return text
    keys = pa.array(list(mapping), pa.string())
    pos = pc.index_in(text, value_set=keys)
    mapped = pc.take(pa.array(list(mapping.values()), pa.string()), pos)
    return pc.if_else(pos.is_valid(), mapped, text)
