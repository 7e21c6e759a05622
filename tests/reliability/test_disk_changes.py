"""A served version's files truncated on disk under a real uvicorn process.

- loaded into private memory (the default for versions under ``index_private_max_bytes``): answers
  keep coming from the copy, the process lives, the poll's size check names the file in ``/readyz``;
- memory-mapped and found by the poll's size check before any lookup touches it: dropped, the newest
  valid version serves (``/readyz`` says which and why);
- memory-mapped and read before the check: the kernel kills the process with SIGBUS, which cannot be
  caught; ``faulthandler`` leaves the cause and the Python stack in the log (it used to die silently).
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import httpx
import pytest

from core.layout import IndexRoot
from tests.app.server import start_service
from tests.reliability.scenarios import TRIGGERS

pytestmark = pytest.mark.slow
T = TRIGGERS[0]


def truncate(index_root: Path, version: str, size: int) -> tuple[Path, int]:
    path = IndexRoot(index_root).version(version).topn_ids("general")
    before = path.stat().st_size
    with open(path, "r+b") as f:  # noqa: PTH123 - in place: the served mapping sees it
        f.truncate(size)
    return path, before


def wait_for(predicate: object, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_a_private_copy_keeps_serving_and_readiness_names_the_file(index_root: Path, tmp_path: Path) -> None:
    with start_service(index_root, settings={"reload_poll_s": 0.2}, log_path=tmp_path / "log") as service:
        before = httpx.get(f"{service.base}/i2i/{T}?k=3").json()["candidates"]
        _, size = truncate(index_root, "v1", 0)
        for _ in range(20):
            r = httpx.get(f"{service.base}/i2i/{T}?k=3")
            assert r.status_code == 200 and r.json()["candidates"] == before
        wait_for(lambda: httpx.get(f"{service.base}/readyz").json()["damaged"])
        ready = httpx.get(f"{service.base}/readyz").json()
        assert ready["status"] == "ready" and ready["version"] == "v1"
        assert ready["damaged"] == {
            "v1": f"v1: general/topn_ids.npy has 0 bytes, the manifest says {size} (truncated or replaced?)"
        }
    assert "keeps serving the copy it loaded" in (tmp_path / "log").read_text()


def test_a_mapped_version_found_truncated_is_dropped_for_the_newest_valid_one(
    index_root: Path, tmp_path: Path
) -> None:
    settings = {"reload_poll_s": 0.2, "index_private_max_bytes": 0}
    with start_service(index_root, settings=settings, log_path=tmp_path / "log") as service:
        truncate(index_root, "v1", 0)
        wait_for(lambda: (httpx.get(f"{service.base}/readyz").json().get("fallback") or {}).get("version"))
        ready = httpx.get(f"{service.base}/readyz").json()
        assert ready["status"] == "ready" and ready["version"] == "v4" and "v1" in ready["damaged"]
        r = httpx.get(f"{service.base}/i2i/{T}?k=3")
        assert r.status_code == 200 and r.headers["x-index-version"] == "v4"
    log = (tmp_path / "log").read_text()
    assert "index version v1 dropped, its files changed on disk" in log
    assert "serving the newest valid version v4 instead" in log


def test_a_sigbus_from_a_truncated_map_leaves_its_cause_in_the_log(index_root: Path, tmp_path: Path) -> None:
    settings = {"reload_poll_s": 60, "index_private_max_bytes": 0}
    with start_service(index_root, settings=settings, log_path=tmp_path / "log") as service:
        truncate(index_root, "v1", 0)
        with contextlib.suppress(httpx.HTTPError):
            httpx.get(f"{service.base}/i2i/{T}?k=3", timeout=5)
        wait_for(lambda: "Fatal Python error: Bus error" in (tmp_path / "log").read_text())
    log = (tmp_path / "log").read_text()
    assert "Fatal Python error: Bus error" in log and "index/serving.py" in log
