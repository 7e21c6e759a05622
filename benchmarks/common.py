"""Small helpers shared by the benchmark scripts (not part of the package; stdlib only).

- :func:`peak_rss_bytes`: peak resident set size of this process or of its waited-for children.
- :func:`cpu_seconds`: user + system CPU seconds of this process or of its waited-for children (on a
  shared machine a steadier figure than wall time).
- :func:`timed`: a context manager that measures wall-clock seconds.
- :func:`print_table`: a plain fixed-width table on stdout.
"""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

GIB = 1 << 30


def peak_rss_bytes(children: bool = False) -> int:
    """Peak RSS in bytes of this process, or (``children=True``) the largest of its terminated,
    waited-for child processes. Linux reports ``ru_maxrss`` in KiB, macOS in bytes.

    For this process Linux's ``VmHWM`` is read when present: ``ru_maxrss`` survives ``exec``, so a
    spawned process would otherwise report its parent's peak whenever that is larger. (The children's
    figure has the same limit: a child's peak is at least its parent's at the fork.)"""
    if not children:
        try:
            with open("/proc/self/status") as fh:
                for line in fh:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
    who = resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF
    maxrss = resource.getrusage(who).ru_maxrss
    return int(maxrss if sys.platform == "darwin" else maxrss * 1024)


def cpu_seconds(children: bool = False) -> float:
    """User + system CPU seconds used so far by this process, or by its terminated, waited-for children."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF)
    return float(usage.ru_utime + usage.ru_stime)


@dataclass
class Timing:
    """Filled by :func:`timed`: ``seconds`` is set when the block exits."""

    seconds: float = 0.0


@contextmanager
def timed() -> Iterator[Timing]:
    """``with timed() as t: ...`` then ``t.seconds`` (wall clock, perf_counter)."""
    t = Timing()
    start = time.perf_counter()
    try:
        yield t
    finally:
        t.seconds = time.perf_counter() - start


def rate(count: float, seconds: float) -> str:
    """``count / seconds`` as a short human string (e.g. ``1.23M/s``)."""
    if seconds <= 0:
        return "-"
    r = count / seconds
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if r >= scale:
            return f"{r / scale:.2f}{unit}/s"
    return f"{r:.0f}/s"


def print_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Print ``rows`` under ``header`` as a Markdown-compatible table with padded columns."""
    cells = [[str(c) for c in header]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]

    def line(row: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"

    print(line(cells[0]))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in cells[1:]:
        print(line(row))
    sys.stdout.flush()
