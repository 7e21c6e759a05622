"""Hot reload in process: publish -> swap, bad version refused (old keeps serving), the poller, and
requests keeping the version they started with."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

from fastapi.testclient import TestClient

from core.atomic import atomic_write_bytes
from core.layout import IndexRoot
from index.publish import publish
from tests.app.conftest import ITEM_IDS, Built, brute_force, make_settings
from tests.app.test_routes import sample

TRIGGER = int(ITEM_IDS[0])
ADMIN = {"Authorization": "Bearer s3cret"}


def point_current_at(index_root: Path, version: str) -> None:
    """Move CURRENT without validating (what a broken publisher could do)."""
    atomic_write_bytes(IndexRoot(index_root).current, f"{version}\n".encode())


def corrupt_copy(index_root: Path, source: str, name: str) -> None:
    root = IndexRoot(index_root)
    shutil.copytree(root.version(source).root, root.version(name).root)
    faiss_file = root.version(name).faiss_index("general")
    faiss_file.write_bytes(faiss_file.read_bytes()[:100])  # truncated FAISS file


def test_admin_reload_swaps_to_the_published_version(
    client: TestClient, index_root: Path, built: Built
) -> None:
    publish(index_root, "v2")
    r = client.post("/admin/reload", headers=ADMIN)
    assert r.status_code == 200 and r.json() == {
        "result": "success",
        "version": "v2",
        "previous": "v1",
        "detail": "",
    }
    body = client.get(f"/i2i/{TRIGGER}?k=5").json()
    assert body["index_version"] == "v2"
    assert [c["item_id"] for c in body["candidates"]] == brute_force(built.v2, "general", TRIGGER, set())[:5]
    text = client.get("/metrics").text
    assert sample(text, "m2grl_index_reloads_total", result="success") == 2
    assert sample(text, "m2grl_index_info", version="v2") == 1
    assert sample(text, "m2grl_index_info", version="v1") == 0


def test_corrupted_version_is_refused_and_old_keeps_serving(client: TestClient, index_root: Path) -> None:
    corrupt_copy(index_root, "v2", "v3")
    point_current_at(index_root, "v3")
    r = client.post("/admin/reload", headers=ADMIN)
    assert r.status_code == 409
    assert r.json()["result"] == "failure" and "v3" in r.json()["detail"] and r.json()["previous"] == "v1"
    assert client.get(f"/i2i/{TRIGGER}?k=3").json()["index_version"] == "v1"
    ready = client.get("/readyz")
    assert ready.status_code == 200 and "v3" in ready.json()["last_error"]
    text = client.get("/metrics").text
    assert sample(text, "m2grl_index_reloads_total", result="failure") == 1
    # the refused version is not retried by the poller (no repeated failures for one bad version)
    assert client.app.state.ctx.manager.served.current.version == "v1"  # type: ignore[attr-defined]
    publish(index_root, "v2")  # a good version afterwards is taken
    assert client.post("/admin/reload", headers=ADMIN).json()["version"] == "v2"


def test_incomplete_version_is_refused(client: TestClient, index_root: Path) -> None:
    root = IndexRoot(index_root)
    shutil.copytree(root.version("v2").root, root.version("v4").root)
    root.version("v4").complete_marker.unlink()
    point_current_at(index_root, "v4")
    r = client.post("/admin/reload", headers=ADMIN)
    assert r.status_code == 409 and "_COMPLETE" in r.json()["detail"]


def test_poller_picks_up_current(index_root: Path, client_for: Callable[..., TestClient]) -> None:
    client = client_for(make_settings(index_root, reload_poll_s=0.05))
    publish(index_root, "v2")
    deadline = time.monotonic() + 5
    while client.get("/readyz").json()["version"] != "v2":
        assert time.monotonic() < deadline, "poller did not load v2"
        time.sleep(0.05)


def test_a_request_keeps_the_version_it_started_with(client: TestClient, index_root: Path) -> None:
    manager = client.app.state.ctx.manager  # type: ignore[attr-defined]
    held = manager.served.get(None)  # what a request in flight holds
    publish(index_root, "v2")
    assert client.post("/admin/reload", headers=ADMIN).json()["result"] == "success"
    assert manager.served.get(None).version == "v2"
    old = held.neighbours(TRIGGER, "general", 5)  # still answers, from v1
    assert held.version == "v1" and len(old.candidates) == 5
