"""Cold items served: a cold trigger answers from its placed vector, every candidate says whether it is
cold (single lookup, batch, u2i; general and diversity), an id outside the catalogue stays a one-line
404, and a version with cold items hot-reloads like any other."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from index.build import build_index
from index.publish import publish
from offline.jobs.cold_items import cold_builder
from tests.app.conftest import INDEX_CONFIG, INGEST, INGEST_TOKEN, make_settings
from tests.app.server import run_service
from tests.index import cold_fixtures as F

CONFIG = INDEX_CONFIG.replace(topn=8, recall_k=3, recall_queries=9)
ADMIN = {"Authorization": "Bearer s3cret"}
COLD_TRIGGER = int(F.COLD[0])


def build(root: Path, work: Path, version: str, *, cold: bool, publish_it: bool = True) -> None:
    dataset = F.write_dataset(work / version / "dataset")
    model = F.write_model(work / version / "model", dataset)
    metric = F.write_metric(work / version / "metric")
    build_index(
        model, root, CONFIG, metric_dir=metric, version=version, publish=publish_it, progress=False,
        cold=cold_builder(model, rule="group-mean" if cold else "none", scale=0.9),
    )  # fmt: skip


@pytest.fixture(scope="module")
def cold_built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An index root serving ``c1`` (with cold items), plus ``w0`` (the same model, no cold item)."""
    base = tmp_path_factory.mktemp("app-cold")
    build(base / "index", base / "work", "w0", cold=False)
    build(base / "index", base / "work", "c1", cold=True)
    return base / "index"


@pytest.fixture
def cold_root(cold_built: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "index"
    shutil.copytree(cold_built, dst)
    return dst


def flags(candidates: list[dict]) -> list[tuple[int, bool]]:
    return [(c["item_id"], c["cold"]) for c in candidates]


def expected_flags(candidates: list[dict]) -> list[tuple[int, bool]]:
    return [(c["item_id"], c["item_id"] in F.COLD) for c in candidates]


def test_cold_trigger_and_flags_on_every_route(
    cold_root: Path, client_for: Callable[..., TestClient]
) -> None:
    client = client_for(make_settings(cold_root))
    # every other item (general) / every item outside the trigger's category (diversity): both kinds
    for mode, k in (("general", 8), ("diversity", 5)):
        r = client.get(f"/i2i/{COLD_TRIGGER}", params={"mode": mode, "k": k})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["trigger"] == COLD_TRIGGER and body["returned"] == k
        assert flags(body["candidates"]) == expected_flags(body["candidates"])
        assert any(c["cold"] for c in body["candidates"]) and not all(c["cold"] for c in body["candidates"])
    warm = client.get("/i2i/10", params={"k": 8}).json()["candidates"]
    assert flags(warm) == expected_flags(warm) and any(c["cold"] for c in warm)
    batch = client.post("/i2i:batch", json={"item_ids": [COLD_TRIGGER, F.OUTSIDE], "k": 4}).json()["results"]
    assert batch[0]["error"] is None and flags(batch[0]["candidates"]) == expected_flags(
        batch[0]["candidates"]
    )
    assert batch[1]["error"] == "unknown_item"
    events = {"user_id": "u", "events": [{"item_id": COLD_TRIGGER}]}
    assert client.post("/events", json=events, headers=INGEST).status_code == 202
    u2i = client.get("/u2i", params={"k": 4}, headers={"X-User-Id": "u"}).json()
    assert u2i["triggers"] == [COLD_TRIGGER] and flags(u2i["candidates"]) == expected_flags(u2i["candidates"])
    outside = client.get(f"/i2i/{F.OUTSIDE}")
    assert outside.status_code == 404 and outside.json()["error"] == "unknown_item"


def test_a_version_with_cold_items_hot_reloads(
    cold_root: Path, client_for: Callable[..., TestClient]
) -> None:
    publish(cold_root, "w0")
    client = client_for(make_settings(cold_root))
    assert client.get(f"/i2i/{COLD_TRIGGER}").status_code == 404
    assert all(c["cold"] is False for c in client.get("/i2i/10", params={"k": 8}).json()["candidates"])
    publish(cold_root, "c1")
    r = client.post("/admin/reload", headers=ADMIN)
    assert r.json()["result"] == "success" and r.json()["version"] == "c1"
    body = client.get(f"/i2i/{COLD_TRIGGER}").json()
    assert body["index_version"] == "c1" and flags(body["candidates"]) == expected_flags(body["candidates"])


@pytest.mark.slow
def test_cold_trigger_end_to_end(cold_root: Path, tmp_path: Path) -> None:
    """Under uvicorn: the cold trigger's answer with its flags, and an id outside the catalogue a
    one-line JSON 404."""
    with run_service(cold_root, settings={"ingest_token": INGEST_TOKEN}, log_path=tmp_path / "log") as base, \
            httpx.Client(base_url=base, timeout=5) as c:  # fmt: skip
        r = c.get(f"/i2i/{COLD_TRIGGER}", params={"k": 5})
        assert r.status_code == 200 and r.json()["index_version"] == "c1"
        candidates = r.json()["candidates"]
        assert len(candidates) == 5 and flags(candidates) == expected_flags(candidates)
        d = c.get(f"/i2i/{COLD_TRIGGER}", params={"k": 3, "mode": "diversity"}).json()
        assert d["excluded_categories"] == [int(F.COLD_CATEGORY[0])]
        assert flags(d["candidates"]) == expected_flags(d["candidates"])
        missing = c.get(f"/i2i/{F.OUTSIDE}")
        assert missing.status_code == 404 and missing.content.count(b"\n") == 0
        assert missing.headers["content-type"] == "application/json"
        assert missing.json()["detail"] == f"item {F.OUTSIDE} is not in the index"
