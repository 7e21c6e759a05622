"""End-to-end: the real service under uvicorn (1 and 2 workers) on loopback."""

from __future__ import annotations

import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest

from index.publish import publish
from tests.app.conftest import (
    INGEST,
    INGEST_TOKEN,
    ITEM_IDS,
    ITEM_LABELS,
    UNKNOWN_ITEM,
    Built,
    RedisServer,
    brute_force,
    category,
)
from tests.app.server import run_service
from tests.app.test_routes import sample

pytestmark = pytest.mark.slow
TRIGGER = int(ITEM_IDS[0])


def test_every_route(index_root: Path, tmp_path: Path, built: Built) -> None:
    with run_service(index_root, settings={"admin_token": "t", "ingest_token": INGEST_TOKEN},
                     log_path=tmp_path / "log") as base, \
            httpx.Client(base_url=base, timeout=5) as c:  # fmt: skip
        assert c.get("/healthz").status_code == 200
        assert c.get("/readyz").json()["version"] == "v1"
        r = c.get(f"/i2i/{TRIGGER}", params={"k": 5, "mode": "general"})
        assert [x["item_id"] for x in r.json()["candidates"]] == brute_force(
            built.v1, "general", TRIGGER, set()
        )[:5]
        assert r.headers["x-variant"] == "control" and r.headers["content-type"] == "application/json"
        own = category(TRIGGER)
        assert (
            c.post(
                "/events", json={"user_id": "e2e", "events": [{"item_id": int(ITEM_IDS[1])}]}, headers=INGEST
            ).status_code
            == 202
        )
        d = c.get(
            f"/i2i/{TRIGGER}", params={"k": 5, "mode": "diversity"}, headers={"X-User-Id": "e2e"}
        ).json()
        assert d["excluded_categories"] == sorted({own, category(int(ITEM_IDS[1]))})
        b = c.post("/i2i:batch", json={"item_ids": [TRIGGER, UNKNOWN_ITEM], "k": 3}).json()
        assert [x["error"] for x in b["results"]] == [None, "unknown_item"]
        u = c.get("/u2i", params={"k": 4}, headers={"X-User-Id": "e2e"}).json()
        assert u["triggers"] == [int(ITEM_IDS[1])] and u["returned"] == 4
        assert c.get(f"/i2i/{UNKNOWN_ITEM}").status_code == 404
        assert c.get(f"/i2i/{TRIGGER}?k=100000").status_code == 422
        assert c.post("/admin/reload", headers={"Authorization": "Bearer t"}).json()["result"] == "unchanged"
        schema = c.get("/openapi.json").json()
        assert "/i2i/{item_id}" in schema["paths"] and "/i2i:batch" in schema["paths"]
        # the hot route parses its own parameters; they are still documented (app.query.openapi_parameters)
        params = {p["name"]: p for p in schema["paths"]["/i2i/{item_id}"]["get"]["parameters"]}
        assert params["item_id"]["in"] == "path" and params["item_id"]["required"] is True
        assert params["item_id"]["schema"]["format"] == "int64"
        assert {"mode", "k", "exclude_categories", "exclude_recent"} <= set(params)
        assert "example" in schema["components"]["schemas"]["I2IResponse"]
        assert c.get("/docs").status_code == 200
        assert "m2grl_request_latency_seconds_bucket" in c.get("/metrics").text


def test_string_ids_end_to_end(labelled_root: Path, tmp_path: Path) -> None:
    """A version built from string ids, under uvicorn: labels in, labels out, a percent-encoded label
    included, and an unknown label a one-line JSON 404."""
    settings = {"ingest_token": INGEST_TOKEN}
    with run_service(labelled_root, settings=settings, log_path=tmp_path / "log") as base, \
            httpx.Client(base_url=base, timeout=5) as c:  # fmt: skip
        r = c.get("/i2i/B07-abc", params={"k": 3, "exclude_categories": "garden"})
        assert r.status_code == 200 and r.json()["trigger"] == "B07-abc"
        assert all(
            x["item_id"] in ITEM_LABELS and x["attributes"]["category"] != "garden"
            for x in r.json()["candidates"]
        )
        seen = r.json()["candidates"][0]
        assert c.post("/events", json={"user_id": "s", "events": [{"item_id": seen["item_id"]}]},
                      headers=INGEST).json()["categories"] == [seen["attributes"]["category"]]  # fmt: skip
        d = c.get("/i2i/B07%2Dabc", params={"mode": "diversity"}, headers={"X-User-Id": "s"}).json()
        assert seen["attributes"]["category"] in d["excluded_categories"]
        missing = c.get("/i2i/B07-missing")
        assert missing.status_code == 404 and missing.content.count(b"\n") == 0
        assert missing.json()["detail"] == "item 'B07-missing' is not in the index"


def test_variant_split_and_stickiness(index_root: Path) -> None:
    experiment = {"salt": "e2e", "variants": [{"name": "a", "weight": 1}, {"name": "b", "weight": 3}]}
    users = [f"user-{i}" for i in range(1000)]
    with run_service(index_root, settings={"experiment": experiment}) as base, \
            httpx.Client(base_url=base, timeout=5) as c:  # fmt: skip
        first = [c.get(f"/i2i/{TRIGGER}?k=1", headers={"X-User-Id": u}).json()["variant"] for u in users]
        again = [
            c.get(f"/i2i/{TRIGGER}?k=1", headers={"X-User-Id": u}).headers["x-variant"] for u in users[:200]
        ]
        forced = c.get(f"/i2i/{TRIGGER}?k=1", headers={"X-User-Id": users[0], "X-Variant": "a"}).json()
        unknown = c.get(f"/i2i/{TRIGGER}?k=1", headers={"X-Variant": "zzz"})
    assert again == first[:200]
    share_b = first.count("b") / len(first)
    assert share_b == pytest.approx(0.75, abs=0.045)  # sd 0.0137 at n=1000: > 3 sd
    assert forced["variant"] == "a"
    assert unknown.status_code == 422 and unknown.json()["allowed"] == {"variant": ["a", "b"]}


def test_reload_during_requests(index_root: Path, built: Built) -> None:
    """Publish v2 while clients hammer the service: no request fails, every answer is wholly one
    version's (its candidates are that version's brute-force ranking)."""
    expected = {
        "v1": brute_force(built.v1, "general", TRIGGER, set())[:8],
        "v2": brute_force(built.v2, "general", TRIGGER, set())[:8],
    }
    assert expected["v1"] != expected["v2"]
    answers: list[tuple[int, str, list[int]]] = []
    stop = threading.Event()

    def hammer(base: str) -> None:
        with httpx.Client(base_url=base, timeout=5) as c:
            while not stop.is_set():
                r = c.get(f"/i2i/{TRIGGER}?k=8")
                body = r.json()
                answers.append(
                    (
                        r.status_code,
                        body.get("index_version", ""),
                        [x["item_id"] for x in body.get("candidates", [])],
                    )
                )

    with run_service(index_root, settings={"reload_poll_s": 0.1}) as base:
        threads = [threading.Thread(target=hammer, args=(base,)) for _ in range(3)]
        for t in threads:
            t.start()
        time.sleep(0.5)
        publish(index_root, "v2")
        deadline = time.monotonic() + 10
        while not any(v == "v2" for _, v, _ in answers[-20:]) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
        stop.set()
        for t in threads:
            t.join()
    assert answers and all(status == 200 for status, _, _ in answers)
    versions = [v for _, v, _ in answers]
    assert "v1" in versions and "v2" in versions
    for _, version, ids in answers:
        assert ids == expected[version]


@pytest.mark.parametrize("workers", [1, 2])
def test_metrics_counts_with_workers(index_root: Path, tmp_path: Path, workers: int) -> None:
    multiproc = tmp_path / "prom" if workers > 1 else None
    n = 40
    with run_service(index_root, workers=workers, multiproc_dir=multiproc) as base, \
            httpx.Client(base_url=base, headers={"Connection": "close"}) as c:  # fmt: skip
        pids = set()
        deadline = time.monotonic() + 30  # every worker loads the index at start-up (counted once each)
        while sample(c.get("/metrics").text, "m2grl_index_reloads_total", result="success") < workers:
            assert time.monotonic() < deadline, "not every worker started"
            time.sleep(0.1)

        def one(i: int) -> int:  # a new connection each time, concurrently, so both workers answer
            r = c.get(f"/i2i/{ITEM_IDS[i % 10]}?k=3&mode=diversity", headers={"X-User-Id": f"m{i}"})
            return r.status_code

        with ThreadPoolExecutor(8) as pool:
            assert list(pool.map(one, range(n))) == [200] * n
        for _ in range(3):
            c.get(f"/i2i/{UNKNOWN_ITEM}")
        texts = [c.get("/metrics").text for _ in range(4)]
        if multiproc is not None:
            pids = {f.name.split("_")[-1] for f in multiproc.glob("counter_*.db")}
    for text in texts:  # whichever worker answers the scrape, it reports the whole service
        assert (
            sample(text, "m2grl_requests_total", route="/i2i/{item_id}", mode="diversity", status="200") == n
        )
        assert sample(text, "m2grl_request_latency_seconds_count", route="/i2i/{item_id}", status="200") == n
        assert sample(text, "m2grl_requests_total", route="/i2i/{item_id}", status="404") == 3
        assert sample(text, "m2grl_errors_total", reason="unknown_item") == 3
        assert sample(text, "m2grl_candidates_returned_total", mode="diversity", variant="control") == 3 * n
        assert sample(text, "m2grl_index_info", version="v1") == 1
        assert sample(text, "m2grl_index_items", mode="diversity") == len(ITEM_IDS)
        assert sample(text, "m2grl_index_reloads_total", result="success") == workers
    if multiproc is not None:
        assert len(pids) == 2, f"expected both workers to have served, got {pids}"


@pytest.mark.redis
def test_redis_store_degrades_and_recovers(index_root: Path, redis_server: RedisServer) -> None:
    settings = {"recent_store": "redis", "redis_url": redis_server.url, "redis_timeout_s": 0.05,
                "redis_retry_s": 0.2, "ingest_token": INGEST_TOKEN}  # fmt: skip
    user = f"r{np.random.default_rng().integers(1 << 30)}"
    seen = int(ITEM_IDS[2])
    with run_service(index_root, settings=settings) as base, httpx.Client(base_url=base, timeout=5) as c:
        assert (
            c.post(
                "/events", json={"user_id": user, "events": [{"item_id": seen}]}, headers=INGEST
            ).status_code
            == 202
        )
        params = {"k": 10, "mode": "diversity", "exclude_categories": "5"}
        full = sorted({category(TRIGGER), category(seen), 5})
        assert (
            c.get(f"/i2i/{TRIGGER}", params=params, headers={"X-User-Id": user}).json()["excluded_categories"]
            == full
        )
        os.kill(redis_server.pid, signal.SIGSTOP)
        try:
            t0 = time.perf_counter()
            for _ in range(5):
                r = c.get(f"/i2i/{TRIGGER}", params=params, headers={"X-User-Id": user})
                assert r.status_code == 200
                # degraded: explicit and own-category exclusions only
                assert r.json()["excluded_categories"] == sorted({category(TRIGGER), 5})
            assert time.perf_counter() - t0 < 2.0
            down = c.post("/events", json={"user_id": user, "events": [{"item_id": seen}]}, headers=INGEST)
            assert down.status_code == 503 and down.json()["error"] == "store_unavailable"
            text = c.get("/metrics").text
            assert sample(text, "m2grl_recent_store_errors_total", store="redis") >= 1
        finally:
            os.kill(redis_server.pid, signal.SIGCONT)
        time.sleep(0.3)
        assert (
            c.get(f"/i2i/{TRIGGER}", params=params, headers={"X-User-Id": user}).json()["excluded_categories"]
            == full
        )
