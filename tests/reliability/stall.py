"""Scenarios where a few clients try to stall a worker (shared by ``tests/reliability`` and
``benchmarks/reliability.py``):

- ``batch_stall``: clients in their own processes loop ``POST /i2i:batch`` as large as the service
  allows while this process probes ``GET /healthz``; returns the probe latencies;
- ``slow_client``: a request that declares a body it never finishes sending, and a header far over the
  limit, on raw sockets; returns what the server answered and when.

The batch clients run in subprocesses so that their response parsing does not take this process's GIL
from the prober: the latency measured is the server's.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np

from core.atomic import atomic_write_json
from core.layout import MetricLayout, ModelLayout
from index.build import build_index
from index.config import IndexConfig

#: catalogue of the stall index: large enough that a 500-deep diversity lookup searches FAISS
STALL_ITEMS = 8000
STALL_CATEGORIES = 40


def build_stall_root(base: Path, n_items: int = STALL_ITEMS) -> Path:
    """An index root with one published version ``big`` of ``n_items`` items (general and diversity
    modes, flat index, top-200 maps); returns the root."""
    rng = np.random.default_rng(7)
    model = ModelLayout(base / "model")
    for path in (model.embeddings("item"), model.vocab("item"), model.attributes("category")):
        path.parent.mkdir(parents=True, exist_ok=True)
    np.save(model.embeddings("item"), rng.normal(size=(n_items, 16)).astype(np.float32))
    np.save(model.vocab("item"), np.arange(1, n_items + 1, dtype=np.int64))
    np.save(model.attributes("category"), (np.arange(n_items) % STALL_CATEGORIES).astype(np.int64))
    atomic_write_json(model.manifest, {"version": "stall", "views": ["item", "category"]})
    metric = MetricLayout(base / "metric")
    metric.root.mkdir(parents=True, exist_ok=True)
    np.save(metric.diversity, rng.normal(size=(n_items, 8)).astype(np.float32))
    atomic_write_json(metric.manifest, {"source_model": "stall"})
    root = base / "index"
    config = IndexConfig(index_type="flat", topn=200, device="cpu", recall_queries=20, recall_k=5)
    build_index(model.root, root, config, metric_dir=metric.root, version="big", progress=False)
    return root


_CLIENT = textwrap.dedent(
    """
    import sys, time, httpx
    base, triggers, k, until = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    body = {"item_ids": list(range(1, triggers + 1)), "k": k, "mode": "diversity"}
    sent = bytes_in = 0
    statuses = set()
    with httpx.Client(base_url=base, timeout=30) as client:
        while time.time() < until:
            r = client.post("/i2i:batch", json=body)
            sent += 1
            bytes_in += len(r.content)
            statuses.add(r.status_code)
    print(sent, bytes_in, ",".join(map(str, sorted(statuses))))
    """
)


@dataclass(frozen=True)
class StallReport:
    """Probe latencies of ``GET /healthz`` (seconds) while the batch clients ran, and what the clients
    did: batches sent, bytes received, status codes seen."""

    probes: list[float]
    batches: int
    bytes_in: int
    statuses: set[int]

    def quantile(self, q: float) -> float:
        return float(np.quantile(np.asarray(self.probes), q)) if self.probes else 0.0


def batch_stall(
    base: str, *, clients: int, triggers: int, k: int, duration_s: float, probe_every_s: float = 0.02
) -> StallReport:
    """``clients`` subprocesses loop ``POST /i2i:batch`` (``triggers`` triggers, ``k``, diversity mode)
    for ``duration_s`` while this process sends ``GET /healthz`` every ``probe_every_s`` on its own
    keep-alive connection."""
    start_probes = time.time() + 1.0  # the clients' interpreters start first
    until = start_probes + duration_s
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _CLIENT, base, str(triggers), str(k), str(until)],
            stdout=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for _ in range(clients)
    ]
    probes: list[float] = []
    try:
        with httpx.Client(base_url=base, timeout=10) as client:
            time.sleep(max(0.0, start_probes - time.time()))
            while time.time() < until:
                t0 = time.perf_counter()
                client.get("/healthz").raise_for_status()
                probes.append(time.perf_counter() - t0)
                time.sleep(probe_every_s)
        batches = bytes_in = 0
        statuses: set[int] = set()
        for proc in procs:
            out, _ = proc.communicate(timeout=60)
            sent, got, codes = out.split()
            batches, bytes_in = batches + int(sent), bytes_in + int(got)
            statuses |= {int(c) for c in codes.split(",") if c}
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return StallReport(probes, batches, bytes_in, statuses)


@dataclass(frozen=True)
class RawAnswer:
    """What a raw-socket request got: the status (0 = the connection closed without an answer, -1 = no
    answer within the wait), the body, and the seconds until the answer or the close."""

    status: int
    body: bytes
    seconds: float


def raw_request(base: str, payload: bytes, *, wait_s: float) -> RawAnswer:
    """Send ``payload`` on a fresh connection and read until the server answers and closes, or
    ``wait_s`` passes."""
    host, port = base.removeprefix("http://").split(":")
    t0 = time.perf_counter()
    data = b""
    with socket.create_connection((host, int(port)), timeout=wait_s) as sock:
        try:
            sock.sendall(payload)
            while chunk := sock.recv(65536):
                data += chunk
        except (TimeoutError, ConnectionResetError, BrokenPipeError):
            if not data:
                return RawAnswer(-1, b"", time.perf_counter() - t0)
    seconds = time.perf_counter() - t0
    if not data:
        return RawAnswer(0, b"", seconds)
    head, _, body = data.partition(b"\r\n\r\n")
    return RawAnswer(int(head.split(b" ", 2)[1]), body, seconds)


def slow_body(base: str, *, wait_s: float) -> RawAnswer:
    """A ``POST /events`` declaring ``Content-Length: 100`` that sends 10 bytes and stops."""
    head = (
        b"POST /events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
    )
    return raw_request(base, head + b'{"events":', wait_s=wait_s)


def huge_header(base: str, size: int, *, wait_s: float) -> RawAnswer:
    """``GET /healthz`` with one header value of ``size`` bytes."""
    value = b"a" * size
    return raw_request(
        base, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + value + b"\r\nConnection: close\r\n\r\n",
        wait_s=wait_s,
    )  # fmt: skip
