"""Timestamps of raw logs -> unix seconds (int64), vectorised with Arrow compute.

Accepted (``time_format``):

- ``"auto"`` (default): integers are unix time (milliseconds when their median is at least ``1e11``,
  i.e. a date after 1973 in ms or after 5138 in s), anything else is read as ISO-8601; of the two,
  the reading that parses more values wins and the other values are bad rows.
- ``"unix_s"`` / ``"unix_ms"``: integer seconds / milliseconds since 1970-01-01 UTC.
- ``"iso"``: ``YYYY-MM-DD``, ``YYYY-MM-DD[T| ]HH:MM[:SS[.fff]]``, optionally followed by ``Z``,
  ``UTC``, ``GMT`` or an offset ``+HH``, ``+HHMM``, ``+HH:MM`` (e.g. ``2019-10-01 00:00:00 UTC``).
- any pattern with a ``%`` is an Arrow ``strptime`` format (``%d/%m/%Y %H:%M``; ``%z`` reads an offset).

Values without a zone are local times of ``timezone`` (an IANA name, default ``UTC``): a time that a
daylight-saving change skips moves to the first valid instant, a repeated one takes its first instance.
Fractions of a second are floored.
"""

from __future__ import annotations

import zoneinfo

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

TIME_FORMATS = ("auto", "unix_s", "unix_ms", "iso")
ACCEPTED = (
    "accepted: unix seconds or milliseconds (integers), ISO-8601 dates/times ('2019-10-01', "
    "'2019-10-01 00:00:00', '2019-10-01T00:00:00.5+02:00', '2019-10-01 00:00:00 UTC'), "
    "or --time-format with a strptime pattern such as '%d/%m/%Y %H:%M'"
)
#: Median integer at or above which ``auto`` reads unix milliseconds.
MS_THRESHOLD = 10**11

_INT = r"^[+-]?0*[0-9]{1,19}$"
_ISO = (
    r"^(?P<date>[0-9]{4}-[0-9]{2}-[0-9]{2})"
    r"(?:[T ](?P<hm>[0-9]{2}:[0-9]{2})(?P<sec>:[0-9]{2})?(?:[.,][0-9]+)?)?"
    r"\s*(?P<zone>Z|UTC|GMT|[+-][0-9]{2}(?::?[0-9]{2})?)?$"
)
_STAMP = "%Y-%m-%d %H:%M:%S"


def check_time_format(time_format: str) -> str | None:
    """``None`` when ``time_format`` is accepted, else why not (one line)."""
    if time_format in TIME_FORMATS or "%" in time_format:
        return None
    return f"unknown time format {time_format!r}; valid: {', '.join(TIME_FORMATS)} or a strptime pattern"


def check_timezone(name: str) -> str | None:
    """``None`` when ``name`` is an IANA time zone, else why not (one line)."""
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return f"unknown time zone {name!r}; use an IANA name such as UTC, Europe/Paris, Asia/Shanghai"
    return None


def describe(kind: str, timezone: str) -> str:
    """How a column was read, for messages (``"ISO-8601 date-times (local times in UTC)"``)."""
    names = {"unix_s": "unix seconds", "unix_ms": "unix milliseconds", "iso": "ISO-8601 date-times"}
    text = names.get(kind, f"strptime pattern {kind!r}")
    return text if kind.startswith("unix") else f"{text} (times without a zone in {timezone})"


def _epoch_seconds(ts: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Floor of a timestamp array in seconds (int64, nulls as 0: the caller masks them)."""
    unit = ts.type.unit
    per_s = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}[unit]
    raw = pc.cast(ts, pa.timestamp(unit, tz=ts.type.tz)).cast(pa.int64()).fill_null(0)
    return np.floor_divide(np.asarray(raw.to_numpy(zero_copy_only=False), dtype=np.int64), per_s)


def _local(ts: pa.Array | pa.ChunkedArray, timezone: str) -> pa.Array | pa.ChunkedArray:
    """Naive timestamps read as wall-clock times of ``timezone`` (skipped times move forward)."""
    if timezone == "UTC":
        return ts
    return pc.assume_timezone(ts, timezone=timezone, ambiguous="earliest", nonexistent="latest")


def is_int64_text(text: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """Whether each (trimmed) string is an integer that fits in int64 (False for null)."""
    ok = pc.fill_null(pc.match_substring_regex(text, _INT), False)
    digits = pc.utf8_ltrim(pc.if_else(ok, text, None), characters="+-0")
    # 19 digits can overflow int64: compare the text, same length means same order
    small = pc.less_equal(pc.utf8_length(digits), 18)
    negative = pc.starts_with(pc.if_else(ok, text, None), "-")
    limit = pc.if_else(negative, "9223372036854775808", "9223372036854775807")
    fits = pc.or_(small, pc.less_equal(digits, limit))
    return pc.and_(ok, pc.fill_null(fits, False))


def _parse_unix(text: pa.Array, ms: bool | None) -> tuple[pa.Array, bool]:
    ok = is_int64_text(text)
    values = pc.cast(pc.if_else(ok, text, None), pa.int64())
    if ms is None:
        present = values.drop_null().to_numpy()
        ms = bool(len(present)) and float(np.median(np.abs(present))) >= MS_THRESHOLD
    if ms:
        seconds = np.floor_divide(np.asarray(values.fill_null(0).to_numpy(), dtype=np.int64), 1000)
        values = pa.array(seconds, pa.int64(), mask=~np.asarray(ok.to_numpy(zero_copy_only=False)))
    return values, ms


def _parse_iso(text: pa.Array, timezone: str) -> pa.Array:
    parts = pc.extract_regex(text, _ISO)  # null where the shape does not match
    date, hm, sec = (pc.struct_field(parts, name) for name in ("date", "hm", "sec"))
    zone = pc.struct_field(parts, "zone")
    clock = pc.if_else(pc.equal(hm, ""), "00:00", hm)
    stamp = pc.binary_join_element_wise(date, " ", clock, pc.if_else(pc.equal(sec, ""), ":00", sec), "")
    naive = pc.strptime(stamp, format=_STAMP, unit="s", error_is_null=True)
    # strptime rolls 2019-02-30 over to March: a value is valid only if it prints back unchanged
    valid = pc.equal(pc.strftime(naive, format=_STAMP), stamp)
    naive = pc.if_else(pc.fill_null(valid, False), naive, None)
    utc_clock = _epoch_seconds(naive)
    local_clock = _epoch_seconds(_local(naive, timezone))
    sign = pc.if_else(pc.starts_with(zone, "-"), -1, 1)
    digits = pc.replace_substring(pc.utf8_slice_codeunits(zone, 1), ":", "")
    is_offset = pc.fill_null(pc.match_substring_regex(zone, r"^[+-]"), False)
    hours = pc.cast(pc.if_else(is_offset, pc.utf8_slice_codeunits(digits, 0, 2), "0"), pa.int64())
    minutes_text = pc.utf8_slice_codeunits(digits, 2, 4)
    minutes = pc.cast(
        pc.if_else(pc.and_(is_offset, pc.not_equal(minutes_text, "")), minutes_text, "0"), pa.int64()
    )
    offset = pc.multiply(sign, pc.add(pc.multiply(hours, 3600), pc.multiply(minutes, 60)))
    offset_np = np.asarray(offset.fill_null(0).to_numpy(zero_copy_only=False), dtype=np.int64)
    naive_zone = np.asarray(pc.fill_null(pc.equal(zone, ""), False).to_numpy(zero_copy_only=False))
    seconds = np.where(naive_zone, local_clock, utc_clock - offset_np)
    return pa.array(seconds, pa.int64(), mask=~np.asarray(naive.is_valid().to_numpy(zero_copy_only=False)))


def _parse_pattern(text: pa.Array, pattern: str, timezone: str) -> pa.Array:
    ts = pc.strptime(text, format=pattern, unit="s", error_is_null=True)
    if ts.type.tz is None:  # no %z: wall-clock times of `timezone`
        ts = _local(ts, timezone)
    return pa.array(
        _epoch_seconds(ts), pa.int64(), mask=~np.asarray(ts.is_valid().to_numpy(zero_copy_only=False))
    )


def parse_timestamps(
    values: pa.Array | pa.ChunkedArray, time_format: str = "auto", timezone: str = "UTC"
) -> tuple[pa.Array, str]:
    """Unix seconds (int64, null where a value is missing or unparsable) and the format used
    (``unix_s``, ``unix_ms``, ``iso`` or the pattern). Integer-typed input is unix time as given."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if pa.types.is_timestamp(values.type):
        return pa.array(_epoch_seconds(values), pa.int64(), mask=~np.asarray(values.is_valid())), "iso"
    if pa.types.is_date(values.type):
        values = pc.cast(values, pa.timestamp("s"))
        return pa.array(
            _epoch_seconds(_local(values, timezone)), pa.int64(), mask=~np.asarray(values.is_valid())
        ), "iso"
    text = pc.utf8_trim_whitespace(pc.cast(values, pa.string()))
    text = pc.if_else(pc.equal(text, ""), None, text)
    if time_format in ("unix_s", "unix_ms"):
        return _parse_unix(text, time_format == "unix_ms")[0], time_format
    if time_format == "iso":
        return _parse_iso(text, timezone), "iso"
    if time_format != "auto":
        return _parse_pattern(text, time_format, timezone), time_format
    unix, ms = _parse_unix(text, None)
    n_unix = len(unix) - unix.null_count
    if n_unix == len(text) - text.null_count:
        return unix, "unix_ms" if ms else "unix_s"
    iso = _parse_iso(text, timezone)
    if len(iso) - iso.null_count > n_unix:
        return iso, "iso"
    return unix, "unix_ms" if ms else "unix_s"
