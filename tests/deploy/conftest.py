"""Shared helpers of the deployment tests: repository paths, required binaries, waiting (free ports:
``tests.net``)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
SCRIPTS = REPO / "scripts"
VENV_BIN = Path(sys.executable).parent


def require_binary(name: str) -> str:
    """Absolute path of ``name`` (PATH, then the project's virtualenv); fail (never skip) when absent."""
    found = shutil.which(name) or shutil.which(name, path=str(VENV_BIN))
    if found is None:
        pytest.fail(
            f"`{name}` not found on PATH: run `bash scripts/install_system_deps.sh` "
            "(Debian packages prometheus, redis-server, wrk) or `pip install -e '.[dev]'`",
            pytrace=False,
        )
    return found


def run(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run a command, capturing text output (never raises on a non-zero exit)."""
    kwargs.setdefault("timeout", 120)
    return subprocess.run(cmd, capture_output=True, text=True, check=False, **kwargs)


def load_yaml_docs(path: Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as fh:
        return [doc for doc in yaml.safe_load_all(fh) if doc]


def wait_until(
    check: Callable[[], bool], timeout: float, what: str, on_fail: Callable[[], str] | None = None
) -> None:
    """Poll ``check`` every 0.2 s until it is true; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    detail = on_fail() if on_fail is not None else ""
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}\n{detail}", pytrace=False)


def http_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def stop(proc: subprocess.Popen[Any]) -> None:
    """Terminate a process this test started (and its uvicorn workers, which exit with their parent)."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def build_tiny_index(root: Path) -> tuple[Path, str]:
    """A 300-item index root (general + diversity modes) built by ``index.build.build_index`` from
    numpy fixtures, the way tests/index builds its versions. Returns (index root, version)."""
    from index.build import build_index
    from tests.index.conftest import FAST, clustered, write_metric, write_model

    model = write_model(root / "model", clustered(300, 8, seed=1))
    metric = write_metric(root / "metric", clustered(300, 4, seed=2))
    index_root = root / "index"
    version = build_index(model, index_root, FAST, metric_dir=metric, progress=False)
    return index_root, version
