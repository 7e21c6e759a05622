"""What the service does when its index versions go bad under it: a mapped file overwritten in place
(503 naming the damage, the version dropped, then the newest valid version served), a bad CURRENT at
start-up (the newest valid version served, logged, in /readyz and a metric), a pinned version that
is gone (not ready, named), and files changed on disk found by the periodic check."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from core.layout import IndexRoot
from index.publish import remove_version
from tests.app.conftest import ITEM_IDS, make_settings
from tests.app.test_reload import ADMIN, point_current_at
from tests.app.test_routes import sample

TRIGGER = int(ITEM_IDS[0])
TWO_ARMS = {
    "variants": [{"name": "control", "weight": 1.0}, {"name": "old", "weight": 0.0, "index_version": "v2"}]
}


def overwrite_ids(index_root: Path, version: str, value: int) -> None:
    """Overwrite every id of ``version``'s general map in place (same file, same size)."""
    ids = np.load(IndexRoot(index_root).version(version).topn_ids("general"), mmap_mode="r+")
    ids[:] = value
    ids.flush()
    del ids


def test_ids_overwritten_in_a_mapped_file_give_503_and_drop_the_version(
    index_root: Path, client_for: Callable[..., TestClient], caplog: pytest.LogCaptureFixture
) -> None:
    client = client_for(make_settings(index_root, index_private_max_bytes=0))  # memory-mapped
    assert client.get(f"/i2i/{TRIGGER}?k=3").status_code == 200
    overwrite_ids(index_root, "v1", 1_000_000)
    with caplog.at_level(logging.ERROR, logger="m2grl.reload"):
        r = client.get(f"/i2i/{TRIGGER}?k=3")
    cause = "a map lists a row outside the catalogue (index 1000000 is out of bounds for axis 0 with size 60)"
    detail = f"index version v1 is damaged on disk: {cause}"
    assert r.status_code == 503
    assert r.json() == {
        "error": "index_damaged",
        "detail": f"{detail}; the version is no longer served",
        "allowed": None,
    }
    assert f"index version v1 dropped, its files changed on disk: {cause}" in caplog.text
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["damaged"] == {"v1": cause}
    assert ready.json()["last_error"] == f"DamagedIndex: {cause}"
    # the next reload refuses v1 (its checksum no longer matches) and serves v2, the newest valid one
    reload = client.post("/admin/reload", headers=ADMIN)
    assert reload.status_code == 409 and "v1: general/topn_ids.npy does not match its sha256" in reload.text
    ready = client.get("/readyz").json()
    assert ready["status"] == "ready" and ready["version"] == "v2"
    assert ready["fallback"]["version"] == "v2" and ready["fallback"]["current"] == "v1"
    assert client.get(f"/i2i/{TRIGGER}?k=3").headers["x-index-version"] == "v2"
    text = client.get("/metrics").text
    assert sample(text, "m2grl_index_damaged_total") == 1 and sample(text, "m2grl_index_fallback") == 1


def test_a_bad_current_at_start_up_falls_back_to_the_newest_valid_version(
    index_root: Path, client_for: Callable[..., TestClient], caplog: pytest.LogCaptureFixture
) -> None:
    point_current_at(index_root, "v9")
    with caplog.at_level(logging.WARNING, logger="m2grl.reload"):
        client = client_for(make_settings(index_root))
    missing = f"InvalidIndexVersion: v9: no folder {IndexRoot(index_root).version('v9').root} (never built, removed or pruned)"
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["version"] == "v2"
    assert ready.json()["fallback"] == {"version": "v2", "current": "v9", "reason": missing}
    assert ready.json()["last_error"] == missing
    warning = (
        f"CURRENT names v9, which cannot be served ({missing}): serving the newest valid version v2 instead"
    )
    assert [r.levelname for r in caplog.records if warning in r.getMessage()] == ["WARNING"]
    assert sample(client.get("/metrics").text, "m2grl_index_fallback") == 1
    assert client.get(f"/i2i/{TRIGGER}?k=3").headers["x-index-version"] == "v2"
    # CURRENT fixed: the version it names serves, the fallback ends
    point_current_at(index_root, "v1")
    assert client.post("/admin/reload", headers=ADMIN).json()["result"] == "success"
    ready = client.get("/readyz").json()
    assert ready["version"] == "v1" and ready["fallback"] is None and ready["last_error"] is None
    assert sample(client.get("/metrics").text, "m2grl_index_fallback") == 0


def test_no_valid_version_at_all_stays_unready_with_the_reason(
    index_root: Path, client_for: Callable[..., TestClient]
) -> None:
    point_current_at(index_root, "v9")
    for version in ("v2",):
        remove_version(index_root, version)
    (IndexRoot(index_root).version("v1").complete_marker).unlink()
    client = client_for(make_settings(index_root))
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.json()["fallback"] is None
    assert ready.json()["detail"].startswith("InvalidIndexVersion: v9: no folder")


def test_a_pinned_version_that_is_gone_is_reported_by_readiness(
    index_root: Path, client_for: Callable[..., TestClient]
) -> None:
    running = client_for(make_settings(index_root, experiment=TWO_ARMS))
    assert running.get("/readyz").status_code == 200
    remove_version(index_root, "v2")  # what pruning did before it kept pinned versions
    # the running worker still serves v2 from memory; a new one cannot load it and says why
    assert running.get(f"/i2i/{TRIGGER}?k=3", headers={"X-Variant": "old"}).status_code == 200
    fresh = client_for(make_settings(index_root, experiment=TWO_ARMS))
    ready = fresh.get("/readyz")
    reason = f"InvalidIndexVersion: v2: no folder {IndexRoot(index_root).version('v2').root} (never built, removed or pruned)"
    assert ready.status_code == 503
    assert ready.json()["missing_pinned"] == {"v2": reason}
    assert (
        ready.json()["last_error"] == f"pinned v2: {reason}"
        and ready.json()["detail"] == f"pinned v2: {reason}"
    )
    assert sample(fresh.get("/metrics").text, "m2grl_index_pins_missing") == 1


def test_the_periodic_check_drops_a_mapped_version_whose_file_was_truncated(
    index_root: Path, client_for: Callable[..., TestClient]
) -> None:
    client = client_for(make_settings(index_root, index_private_max_bytes=0))
    manager = client.app.state.ctx.manager  # type: ignore[attr-defined]
    path = IndexRoot(index_root).version("v1").topn_ids("general")
    size = path.stat().st_size
    with open(path, "r+b") as f:  # noqa: PTH123 - truncated in place, as a broken copy would
        f.truncate(size // 2)
    asyncio.run(manager.verify(full=False))  # the size check of every poll
    assert manager.version is None
    assert manager.damaged == {
        "v1": f"v1: general/topn_ids.npy has {size // 2} bytes, the manifest says {size} (truncated or replaced?)"
    }
    r = client.get(f"/i2i/{TRIGGER}?k=3")
    assert r.status_code == 503 and r.json()["detail"] == "CURRENT is not loaded"


def test_a_privately_loaded_version_keeps_serving_when_its_file_changes(
    index_root: Path, client_for: Callable[..., TestClient]
) -> None:
    client = client_for(make_settings(index_root))  # a 60-item version fits the private budget
    before = client.get(f"/i2i/{TRIGGER}?k=3").json()["candidates"]
    manager = client.app.state.ctx.manager  # type: ignore[attr-defined]
    overwrite_ids(index_root, "v1", 1_000_000)
    assert client.get(f"/i2i/{TRIGGER}?k=3").json()["candidates"] == before
    asyncio.run(manager.verify(full=True))  # the checksum pass
    assert manager.version == "v1" and manager.damaged == {
        "v1": "v1: general/topn_ids.npy does not match its sha256 checksum in the manifest"
    }
    assert client.get("/readyz").json()["damaged"] == manager.damaged
