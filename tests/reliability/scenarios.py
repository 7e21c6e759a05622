"""Scenario drivers of the reliability tests, shared with ``benchmarks/reliability.py`` (the fixtures are
in ``tests/reliability/conftest.py``).

- index roots: several small versions built by ``index.build.build_index`` (``tests.app.conftest``), their
  known answers read back with ``ServingIndex``, and ``add_version`` to publish a fresh copy of one;
- ``drive_load``: paced load from a thread pool of ``httpx`` clients on loopback, every answer checked
  in the sending thread;
- ``rss_bytes`` of a process, ``RedisProcess`` (a redis-server started by ``scripts/start_redis.sh`` that
  we may stop, kill and restart on the same port), ``m2grl`` (the CLI as a subprocess) and ``corrupt``
  (broken index versions, one per kind of damage);
- the scenarios: ``hot_swap``, ``redis_outage`` and ``soak``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import faiss
import httpx
import numpy as np

from core.layout import IndexRoot
from index.publish import publish
from index.serving import ServingIndex
from tests.app.conftest import INGEST, INGEST_TOKEN, ITEM_IDS, N_ITEMS, build_version
from tests.index.conftest import rehash
from tests.net import free_port

REPO = Path(__file__).resolve().parents[2]
#: bases of the swap tests: four versions with different vectors (so answers tell versions apart)
BASES = ("v1", "v2", "v3", "v4")
TRIGGERS = tuple(int(i) for i in ITEM_IDS[:12])
K = 8
ADMIN_TOKEN = "reliability-token"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


# ---------------------------------------------------------------------------------------------- indexes


def build_root(base: Path) -> Path:
    """An index root with ``BASES`` built (seeds 1..4) and ``v1`` published; returns the root."""
    root = base / "index"
    for seed, name in enumerate(BASES, start=1):
        build_version(root, base / "work", name, seed=seed, publish=name == "v1")
    return root


def known_answers(
    root: Path, version: str, triggers: tuple[int, ...] = TRIGGERS, k: int = K
) -> dict[int, list[int]]:
    """``{trigger: candidate ids}`` of ``version`` in general mode, read from the version folder itself."""
    index = ServingIndex.load(IndexRoot(root).version(version).root)
    try:
        return {t: [c.item_id for c in index.neighbours(t, "general", k).candidates] for t in triggers}
    finally:
        index.close()


def add_version(root: Path, source: str, name: str) -> None:
    """Copy the complete version ``source`` to ``name`` (through a hidden temporary name, renamed when
    complete) and publish it with ``index.publish.publish`` (validates, then moves CURRENT)."""
    versions = IndexRoot(root).versions
    tmp = versions / f".copy-{name}-{uuid.uuid4().hex[:6]}"
    shutil.copytree(versions / source, tmp)
    os.rename(tmp, versions / name)
    publish(root, name)


def corrupt(root: Path, source: str, name: str, kind: str, *, rehashed: bool) -> Path:
    """A copy of ``source`` named ``name`` broken in one way; ``rehashed`` recomputes the manifest's
    checksums so the deeper check (dimension, NaN, id map) is what must refuse it."""
    versions = IndexRoot(root)
    target = versions.version(name)
    shutil.copytree(versions.version(source).root, target.root)
    faiss_path = target.faiss_index("general")
    if kind == "missing_marker":
        target.complete_marker.unlink()
    elif kind == "wrong_dimension":
        other = faiss.IndexFlatIP(9)
        other.add(np.ones((N_ITEMS, 9), dtype=np.float32))
        faiss.write_index(other, str(faiss_path))
    elif kind == "nan_embeddings":
        index = faiss.read_index(str(faiss_path))
        x = index.reconstruct_n(0, index.ntotal)
        x[:] = np.nan
        nan_index = faiss.IndexFlatIP(index.d)
        nan_index.add(x)
        faiss.write_index(nan_index, str(faiss_path))
    elif kind == "truncated_index":
        faiss_path.write_bytes(faiss_path.read_bytes()[:100])
    elif kind == "id_map_mismatch":  # one id fewer than the FAISS index and maps hold
        np.save(target.items, np.load(target.items)[:-1])
    else:
        raise ValueError(f"unknown corruption {kind!r}")
    if rehashed and kind != "missing_marker":
        rehash(target.root)
    return target.root


# ---------------------------------------------------------------------------------------------- load


@dataclass(frozen=True)
class Request:
    kind: str
    method: str
    path: str
    json: Any = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Answer:
    """One request's outcome: when it was sent (seconds from the start), its latency, status (0 on a
    transport error), the served version header, what the checker found wrong (None = fine) and what
    the observer noted."""

    kind: str
    sent_s: float
    latency_s: float
    status: int
    version: str | None
    problem: str | None
    detail: Any = None


Checker = Callable[[Request, httpx.Response], str | None]
Observer = Callable[[Request, httpx.Response], Any]


def drive_load(
    base: str,
    *,
    duration_s: float,
    rate: float,
    request_for: Callable[[int], Request],
    check: Checker,
    observe: Observer | None = None,
    threads: int = 4,
    timeout_s: float = 5.0,
) -> list[Answer]:
    """Send ``request_for(i)`` on a fixed schedule (slot ``i`` at ``i / rate`` seconds, slots dealt round
    robin to ``threads`` keep-alive clients; a late thread sends at once, never skips) for
    ``duration_s``; ``check`` (and ``observe``, kept as ``Answer.detail``) run in the sending thread.
    Returns every answer, in no particular order."""
    answers: list[Answer] = []
    lock = threading.Lock()
    start = time.perf_counter()
    total = int(duration_s * rate)

    def worker(first: int) -> None:
        out: list[Answer] = []
        with httpx.Client(base_url=base, timeout=timeout_s) as client:
            for i in range(first, total, threads):
                delay = start + i / rate - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                req = request_for(i)
                sent = time.perf_counter()
                try:
                    r = client.request(req.method, req.path, json=req.json, headers=req.headers)
                except httpx.HTTPError as exc:
                    latency = time.perf_counter() - sent
                    out.append(
                        Answer(req.kind, sent - start, latency, 0, None, f"{type(exc).__name__}: {exc}")
                    )
                    continue
                latency = time.perf_counter() - sent
                detail = None
                try:
                    problem = check(req, r)
                    detail = observe(req, r) if observe is not None else None
                except Exception as exc:  # a malformed answer is a failed request, not a crashed thread
                    problem = f"{type(exc).__name__}: {exc}: {r.text[:200]}"
                version = r.headers.get("x-index-version")
                out.append(Answer(req.kind, sent - start, latency, r.status_code, version, problem, detail))
        with lock:
            answers.extend(out)

    pool = [threading.Thread(target=worker, args=(t,), daemon=True) for t in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return answers


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if values else 0.0


def rss_bytes(pid: int) -> int:
    """Resident set size of process ``pid`` (``VmRSS`` of ``/proc/<pid>/status``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


# ---------------------------------------------------------------------------------------------- redis


class RedisProcess:
    """Debian's redis-server on a fixed loopback port (no persistence), started by
    ``scripts/start_redis.sh``, which a test may SIGSTOP, SIGKILL and start again on the same port.

    The server is not a child of this process (the script starts it in the background), so stopping it
    waits for the pid to disappear (or turn zombie) rather than reaping it."""

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.pid: int | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 300.0) -> None:
        """Start it (``scripts/start_redis.sh DIR PORT`` installs redis-server when missing and returns
        once it answers PING)."""
        out = subprocess.run(
            ["bash", str(REPO / "scripts" / "start_redis.sh"), str(self.workdir), str(self.port)],
            check=True, capture_output=True, text=True, timeout=timeout_s,
        )  # fmt: skip
        port, pid = out.stdout.split()
        assert int(port) == self.port, f"redis-server started on {port}, not {self.port}"
        self.pid = int(pid)

    def ping(self) -> bool:
        import redis

        with contextlib.suppress(redis.RedisError, OSError):
            return bool(redis.Redis(port=self.port, socket_timeout=0.5, socket_connect_timeout=0.5).ping())
        return False

    def signal(self, sig: int) -> None:
        assert self.pid is not None, "redis-server is not started"
        os.kill(self.pid, sig)

    def kill(self) -> None:
        """SIGKILL it and wait until it is gone (the port is free again afterwards)."""
        if self.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGCONT)
                os.kill(self.pid, signal.SIGKILL)
            if not _gone(self.pid, 10.0):
                raise RuntimeError(f"redis-server (pid {self.pid}) survived SIGKILL")
            self.pid = None

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s."""
        if self.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGCONT)
                os.kill(self.pid, signal.SIGTERM)
            if _gone(self.pid, 10.0):
                self.pid = None
            else:
                self.kill()


def _gone(pid: int, timeout_s: float) -> bool:
    """Wait until process ``pid`` has exited (absent, or a zombie its parent has not reaped yet)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError, IndexError):
            return True
        if state in ("Z", "X"):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)


# ---------------------------------------------------------------------------------------------- CLI


def cli_env() -> dict[str, str]:
    """Environment of CLI subprocesses: one BLAS/OpenMP thread (2 shared cores), no progress bars."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("M2GRL_")}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", TQDM_DISABLE="1", PYTHONUNBUFFERED="1")
    return env


def m2grl_command(*args: str) -> list[str]:
    """``m2grl ARGS`` with the CLI of the virtualenv running the tests."""
    script = Path(sys.executable).parent / "m2grl"
    if script.is_file():
        return [str(script), *args]
    return [sys.executable, "-m", "cli.main", *args]


def m2grl(*args: str, timeout_s: float = 300.0) -> subprocess.CompletedProcess[str]:
    """Run the CLI to completion (never raises on a nonzero exit)."""
    return subprocess.run(
        m2grl_command(*args), cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=timeout_s
    )


def assert_clean_failure(result: subprocess.CompletedProcess[str], *fragments: str) -> str:
    """A refused input: nonzero exit, no traceback, and one ``error: ...`` line naming ``fragments``;
    returns that line."""
    output = result.stdout + result.stderr
    assert result.returncode != 0, f"expected a failure, got exit 0:\n{output[-2000:]}"
    assert "Traceback" not in output, f"traceback instead of a clean error:\n{output[-4000:]}"
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, f"expected one 'error:' line, got {errors}:\n{output[-2000:]}"
    for fragment in fragments:
        assert fragment in errors[0], f"{fragment!r} not in {errors[0]!r}"
    return errors[0]


# ---------------------------------------------------------------------------------------------- scenarios


def metric_sample(metrics_text: str, name: str, **labels: str) -> float:
    """Sum of the samples called ``name`` whose labels include ``labels``."""
    from tests.app.test_routes import sample

    return sample(metrics_text, name, **labels)


@dataclass
class SwapReport:
    """Outcome of :func:`hot_swap`."""

    answers: list[Answer]
    swaps: list[str]
    served: set[str]
    reloads_ok: float
    reloads_failed: float
    seconds: float

    @property
    def failures(self) -> list[Answer]:
        return [a for a in self.answers if a.problem is not None]


def hot_swap(
    root: Path,
    *,
    duration_s: float,
    rate: float,
    swap_every_s: float = 2.0,
    threads: int = 4,
    log_path: Path | None = None,
) -> SwapReport:
    """Serve ``root`` (built by :func:`build_root`) under uvicorn, load it at ``rate`` requests/s for
    ``duration_s`` (4 in 5 ``GET /i2i``, 1 in 5 ``POST /i2i:batch`` of 3 triggers) while a new version
    (a copy of one of ``BASES`` under a new name) is published every ``swap_every_s`` seconds; every
    other swap also forces ``POST /admin/reload`` beside the 0.2 s poller.

    An answer fails unless it is a 200 whose ``X-Index-Version`` header equals the body's
    ``index_version`` and whose candidates, for every trigger, are that version's known answer."""
    from tests.app.server import start_service

    expected = {b: known_answers(root, b) for b in BASES}
    base_of: dict[str, str] = {b: b for b in BASES}
    swaps: list[str] = []

    def request_for(i: int) -> Request:
        trigger = TRIGGERS[i % len(TRIGGERS)]
        if i % 5 == 4:
            triggers = [TRIGGERS[(i + j) % len(TRIGGERS)] for j in range(3)]
            return Request("batch", "POST", "/i2i:batch", json={"item_ids": triggers, "k": K})
        return Request("i2i", "GET", f"/i2i/{trigger}?k={K}")

    def check(req: Request, r: httpx.Response) -> str | None:
        if r.status_code != 200:
            return f"{req.kind}: status {r.status_code}: {r.text[:200]}"
        body, version = r.json(), r.headers.get("x-index-version")
        if body["index_version"] != version:
            return f"{req.kind}: header version {version} but body version {body['index_version']}"
        known = expected[base_of[str(version)]]
        if req.kind == "i2i":
            results = [(body["trigger"], body["candidates"])]
        else:
            results = [(res["trigger"], res["candidates"]) for res in body["results"]]
        for trigger, candidates in results:
            ids = [c["item_id"] for c in candidates]
            if ids != known[trigger]:
                return f"{req.kind}: version {version}, trigger {trigger}: {ids} != {known[trigger]}"
        return None

    settings = {"reload_poll_s": 0.2, "admin_token": ADMIN_TOKEN}
    with start_service(root, settings=settings, log_path=log_path) as service:
        start = time.perf_counter()
        stop = threading.Event()

        def publisher() -> None:
            with httpx.Client(base_url=service.base, timeout=10) as client:
                i = 0
                # the last swap leaves a second and a half to be seen by the load
                while not stop.wait(swap_every_s) and time.perf_counter() - start < duration_s - 1.5:
                    i += 1
                    source = BASES[i % len(BASES)]  # never the base served just before (v1 first)
                    name = f"swap{i:03d}-{source}"
                    base_of[name] = source
                    add_version(root, source, name)
                    swaps.append(name)
                    if i % 2 == 0:
                        client.post("/admin/reload", headers=ADMIN).raise_for_status()

        swapper = threading.Thread(target=publisher, daemon=True)
        swapper.start()
        answers = drive_load(
            service.base,
            duration_s=duration_s,
            rate=rate,
            request_for=request_for,
            check=check,
            threads=threads,
        )
        seconds = time.perf_counter() - start
        stop.set()
        swapper.join()
        text = httpx.get(f"{service.base}/metrics", timeout=10).text
    return SwapReport(
        answers=answers,
        swaps=swaps,
        served={a.version for a in answers if a.version},
        reloads_ok=metric_sample(text, "m2grl_index_reloads_total", result="success"),
        reloads_failed=metric_sample(text, "m2grl_index_reloads_total", result="failure"),
        seconds=seconds,
    )


#: phases of :func:`redis_outage`, with their length in units of ``phase_s``
OUTAGE_PHASES = (("healthy", 1.0), ("stopped", 1.5), ("resumed", 1.0), ("killed", 1.5), ("restarted", 1.25))


@dataclass
class PhaseStats:
    """What happened in one phase of :func:`redis_outage` (``recent_used``: share of diversity answers
    that excluded the user's recent category, i.e. read Redis; ``store_errors``: increase of
    ``m2grl_recent_store_errors_total`` during the phase)."""

    name: str
    requests: int
    failures: list[str]
    events_refused: int
    p50_s: float
    p99_s: float
    max_s: float
    recent_used: float
    store_errors: float


def redis_outage(
    root: Path, redis: RedisProcess, *, phase_s: float = 2.0, rate: float = 150.0, threads: int = 4,
    log_path: Path | None = None,
) -> list[PhaseStats]:  # fmt: skip
    """Serve ``root`` with the Redis recent store of ``redis`` and load it (4 in 5 ``GET /i2i`` in
    diversity mode for one of 40 users with a recorded event, 1 in 5 ``POST /events`` re-recording it)
    through the ``OUTAGE_PHASES``: Redis healthy, SIGSTOPped, resumed (SIGCONT), SIGKILLed, restarted
    empty on the same port (the users' events are recorded again at once).

    A failure is any i2i answer that is not a 200, or an events answer that is neither a 202 nor the
    documented 503 ``store_unavailable`` (counted as ``events_refused``)."""
    from tests.app.conftest import category
    from tests.app.server import start_service

    trigger = int(ITEM_IDS[0])
    users = [f"outage-{i}" for i in range(40)]
    seen = {u: int(ITEM_IDS[1 + i % 5]) for i, u in enumerate(users)}  # categories 1..5, never the trigger's

    def record_all(client: httpx.Client, timeout_s: float = 5.0) -> None:
        deadline = time.monotonic() + timeout_s
        for u in users:  # right after a restart the store's breaker may still be open: retry
            while (
                client.post(
                    "/events", json={"user_id": u, "events": [{"item_id": seen[u]}]}, headers=INGEST
                ).status_code
                != 202
            ):
                assert time.monotonic() < deadline, "events are still refused after Redis came back"
                time.sleep(0.05)

    def request_for(i: int) -> Request:
        user = users[i % len(users)]
        if i % 5 == 4:
            return Request(
                "events",
                "POST",
                "/events",
                json={"user_id": user, "events": [{"item_id": seen[user]}]},
                headers=INGEST,
            )
        return Request("i2i", "GET", f"/i2i/{trigger}?mode=diversity&k=5", headers={"X-User-Id": user})

    def check(req: Request, r: httpx.Response) -> str | None:
        if req.kind == "events":
            if r.status_code == 202 or (r.status_code == 503 and r.json()["error"] == "store_unavailable"):
                return None
        elif r.status_code == 200:
            return None
        return f"{req.kind}: status {r.status_code}: {r.text[:200]}"

    def observe(req: Request, r: httpx.Response) -> bool | None:
        if req.kind != "i2i" or r.status_code != 200:
            return None
        return category(seen[req.headers["X-User-Id"]]) in r.json()["excluded_categories"]

    settings = {
        "recent_store": "redis",
        "redis_url": redis.url,
        "redis_timeout_s": 0.05,
        "redis_retry_s": 0.2,
        "ingest_token": INGEST_TOKEN,
    }
    bounds, t = [], 0.0
    for name, units in OUTAGE_PHASES:
        bounds.append((name, t, t + units * phase_s))
        t += units * phase_s
    errors_at: dict[str, float] = {}
    ready_at: dict[str, float] = {}
    with start_service(root, settings=settings, log_path=log_path) as service, \
            httpx.Client(base_url=service.base, timeout=10) as client:  # fmt: skip
        record_all(client)

        def store_errors() -> float:
            return metric_sample(
                client.get("/metrics").text, "m2grl_recent_store_errors_total", store="redis"
            )

        def restart() -> None:
            redis.start()
            record_all(client)

        def controller(start: float) -> None:
            actions = {
                "stopped": lambda: redis.signal(signal.SIGSTOP),
                "resumed": lambda: redis.signal(signal.SIGCONT),
                "killed": redis.kill,
                "restarted": restart,
            }
            for name, begin, _ in bounds:
                time.sleep(max(0.0, start + begin - time.perf_counter()))
                if name in actions:
                    actions[name]()
                ready_at[name] = time.perf_counter() - start
                errors_at[name] = store_errors()
            time.sleep(max(0.0, start + bounds[-1][2] - time.perf_counter()))
            errors_at["end"] = store_errors()

        start = time.perf_counter()
        control = threading.Thread(target=controller, args=(start,), daemon=True)
        control.start()
        answers = drive_load(service.base, duration_s=t, rate=rate, request_for=request_for, check=check,
                             observe=observe, threads=threads)  # fmt: skip
        control.join()
    out = []
    names = [name for name, _, _ in bounds] + ["end"]
    for (name, begin, end), after in zip(bounds, names[1:], strict=True):
        # the first 0.5 s of a phase (and a restart until the events are recorded again) are the transition
        mine = [a for a in answers if begin <= a.sent_s < end]
        settle = max(begin + 0.5, ready_at[name] + 0.3)
        settled = [a.detail for a in mine if a.sent_s >= settle and a.detail is not None]
        lat = [a.latency_s for a in mine if a.kind == "i2i"]
        out.append(PhaseStats(
            name=name,
            requests=len(mine),
            failures=[str(a.problem) for a in mine if a.problem is not None],
            events_refused=sum(1 for a in mine if a.kind == "events" and a.status == 503),
            p50_s=percentile(lat, 50), p99_s=percentile(lat, 99), max_s=max(lat, default=0.0),
            recent_used=sum(settled) / len(settled) if settled else float("nan"),
            store_errors=errors_at[after] - errors_at[name],
        ))  # fmt: skip
    return out


@dataclass
class SoakReport:
    """Outcome of :func:`soak`: answers, and the server's RSS after warm-up and at the end."""

    answers: list[Answer]
    rss_warm: int
    rss_end: int
    rss_samples: list[tuple[float, int]]
    seconds: float

    @property
    def failures(self) -> list[Answer]:
        return [a for a in self.answers if a.problem is not None]

    @property
    def growth(self) -> float:
        return self.rss_end / self.rss_warm - 1.0


def soak(
    root: Path,
    *,
    duration_s: float,
    warmup_s: float,
    rate: float,
    threads: int = 4,
    log_path: Path | None = None,
) -> SoakReport:
    """Steady mixed load on a real uvicorn process for ``duration_s``: ``GET /i2i`` in both modes (half
    for a user), ``POST /i2i:batch``, ``GET /u2i`` and ``POST /events`` for a bounded set of 200 users
    (a growing user set would be the memory store's legitimate growth, not a leak). Records the
    server's RSS every second; ``rss_warm`` is taken at ``warmup_s``. Any non-2xx answer fails."""
    from tests.app.server import start_service

    users = [f"soak-{i}" for i in range(200)]
    items = [int(i) for i in ITEM_IDS]

    def request_for(i: int) -> Request:
        user, item = users[i % len(users)], items[(i * 7) % len(items)]
        headers = {"X-User-Id": user}
        kind = i % 10
        if kind < 4:
            mode = "diversity" if kind % 2 else "general"
            return Request("i2i", "GET", f"/i2i/{item}?k=10&mode={mode}", headers=headers if kind < 2 else {})
        if kind < 6:
            return Request(
                "batch", "POST", "/i2i:batch", json={"item_ids": items[i % 50 : i % 50 + 5], "k": 10}
            )
        if kind < 8:
            return Request("u2i", "GET", "/u2i?k=10", headers=headers)
        events = [{"item_id": items[(i + j) % len(items)], "behavior": "view"} for j in range(3)]
        return Request("events", "POST", "/events", json={"user_id": user, "events": events}, headers=INGEST)

    def check(req: Request, r: httpx.Response) -> str | None:
        return None if r.status_code in (200, 202) else f"{req.kind}: status {r.status_code}: {r.text[:200]}"

    samples: list[tuple[float, int]] = []
    with start_service(root, settings={"ingest_token": INGEST_TOKEN}, log_path=log_path) as service:
        start = time.perf_counter()
        stop = threading.Event()

        def sampler() -> None:
            while not stop.is_set():
                samples.append((time.perf_counter() - start, rss_bytes(service.pid)))
                stop.wait(1.0)

        watch = threading.Thread(target=sampler, daemon=True)
        watch.start()
        answers = drive_load(service.base, duration_s=duration_s, rate=rate, request_for=request_for, check=check,
                             threads=threads)  # fmt: skip
        stop.set()
        watch.join()
        end = rss_bytes(service.pid)
        seconds = time.perf_counter() - start
    warm = next((rss for t, rss in samples if t >= warmup_s), samples[-1][1])
    return SoakReport(answers=answers, rss_warm=warm, rss_end=end, rss_samples=samples, seconds=seconds)
