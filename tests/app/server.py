"""Run the real service under uvicorn in a subprocess on a free loopback port (end-to-end tests)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.net import free_port as free_port  # re-exported: other tests import it from here


def service_env(index_root: Path, settings: dict[str, Any] | None = None) -> dict[str, str]:
    """Environment for the service: M2GRL_* from ``settings`` (nested values as JSON)."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("M2GRL_") and k != "PROMETHEUS_MULTIPROC_DIR"
    }
    env["M2GRL_INDEX_ROOT"] = str(index_root)
    for key, value in (settings or {}).items():
        env[f"M2GRL_{key.upper()}"] = json.dumps(value) if isinstance(value, dict | list) else str(value)
    return env


@dataclass(frozen=True)
class Service:
    """A started service: its base URL and the pid of the uvicorn process (the server itself with one
    worker, the supervisor with several)."""

    base: str
    pid: int


@contextlib.contextmanager
def run_service(index_root: Path, **kwargs: Any) -> Iterator[str]:
    """Start ``uvicorn app.main:create_app --factory``; yield its base URL once ``/readyz`` is 200.
    Keyword arguments are those of :func:`start_service`."""
    with start_service(index_root, **kwargs) as service:
        yield service.base


@contextlib.contextmanager
def start_service(
    index_root: Path,
    *,
    workers: int = 1,
    settings: dict[str, Any] | None = None,
    multiproc_dir: Path | None = None,
    log_path: Path | None = None,
    ready_timeout_s: float = 30.0,
) -> Iterator[Service]:
    """Like :func:`run_service`, yielding the :class:`Service` (base URL and pid)."""
    port = free_port()
    env = service_env(index_root, settings)
    if multiproc_dir is not None:
        multiproc_dir.mkdir(parents=True, exist_ok=True)
        env["PROMETHEUS_MULTIPROC_DIR"] = str(multiproc_dir)
    cmd = [
        sys.executable, "-m", "uvicorn", "app.main:create_app", "--factory", "--host", "127.0.0.1",
        "--port", str(port), "--workers", str(workers), "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip
    log = open(log_path, "wb") if log_path is not None else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=log, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + ready_timeout_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"service exited with {proc.returncode} (log: {log_path})")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/readyz", timeout=1.0).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise TimeoutError(f"service not ready after {ready_timeout_s}s (log: {log_path})")
            time.sleep(0.1)
        yield Service(base, proc.pid)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if hasattr(log, "close"):
            log.close()
