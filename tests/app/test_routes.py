"""In-process tests of every route (TestClient runs the lifespan on a real index root)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from tests.app.conftest import (
    INGEST,
    ITEM_IDS,
    N_ITEMS,
    UNKNOWN_ITEM,
    Built,
    brute_force,
    category,
    make_settings,
)

TRIGGER = int(ITEM_IDS[0])


def sample(metrics_text: str, name: str, **labels: str) -> float:
    """Sum of the samples called ``name`` whose labels include ``labels``."""
    total = 0.0
    for family in text_string_to_metric_families(metrics_text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                total += s.value
    return total


def test_general_answer_matches_brute_force(client: TestClient, built: Built) -> None:
    r = client.get(f"/i2i/{TRIGGER}", params={"k": 5})
    assert r.status_code == 200
    body = r.json()
    assert body["trigger"] == TRIGGER and body["mode"] == "general" and body["index_version"] == "v1"
    assert body["variant"] == "control" and r.headers["x-variant"] == "control"
    assert [c["item_id"] for c in body["candidates"]] == brute_force(built.v1, "general", TRIGGER, set())[:5]
    assert body["returned"] == 5 and body["exhausted"] is False
    first = body["candidates"][0]
    assert set(first["attributes"]) == {"category", "shop"}
    assert first["attributes"]["category"] == category(first["item_id"])
    scores = [c["score"] for c in body["candidates"]]
    assert scores == sorted(scores, reverse=True)


def test_default_k(client: TestClient) -> None:
    body = client.get(f"/i2i/{TRIGGER}").json()
    assert body["k"] == 50 and body["returned"] == 50  # beyond the 12-wide map: refilled from FAISS


def test_diversity_excludes_own_category(client: TestClient, built: Built) -> None:
    own = category(TRIGGER)
    body = client.get(f"/i2i/{TRIGGER}", params={"mode": "diversity", "k": 8}).json()
    assert body["excluded_categories"] == [own]
    ids = [c["item_id"] for c in body["candidates"]]
    assert all(category(i) != own for i in ids)
    assert ids == brute_force(built.v1, "diversity", TRIGGER, {own})[:8]


def test_explicit_exclusions_and_exhaustion(client: TestClient) -> None:
    # every category but 1 excluded: only the other category-1 items (N/6 = 10) remain
    body = client.get(f"/i2i/{TRIGGER}", params={"k": 30, "exclude_categories": "0,2,3,4,5"}).json()
    ids = [c["item_id"] for c in body["candidates"]]
    assert len(ids) == N_ITEMS // 6 and body["exhausted"] is True and body["returned"] == len(ids)
    assert all(category(i) == 1 for i in ids) and len(set(ids)) == len(ids)


def test_recent_categories_from_events(client: TestClient) -> None:
    seen = [int(ITEM_IDS[2]), int(ITEM_IDS[3])]  # categories 2 and 3
    r = client.post("/events", json={"events": [{"item_id": i, "behavior": "view"} for i in seen]
                                     + [{"item_id": UNKNOWN_ITEM}]}, headers={"X-User-Id": "alice", **INGEST})  # fmt: skip
    assert r.status_code == 202
    assert r.json() == {
        "user_id": "alice",
        "recorded": 2,
        "unknown_items": [UNKNOWN_ITEM],
        "categories": [2, 3],
    }
    headers = {"X-User-Id": "alice"}
    general = client.get(f"/i2i/{TRIGGER}", params={"k": 20}, headers=headers).json()
    asked = client.get(f"/i2i/{TRIGGER}", params={"k": 20, "exclude_recent": "true"}, headers=headers).json()
    div = client.get(f"/i2i/{TRIGGER}", params={"k": 20, "mode": "diversity"}, headers=headers).json()
    assert {category(c["item_id"]) for c in general["candidates"]} & {2, 3}  # not excluded unless asked
    assert not {category(c["item_id"]) for c in asked["candidates"]} & {2, 3}
    assert asked["excluded_categories"] == [2, 3]
    assert div["excluded_categories"] == [0, 2, 3]
    assert not {category(c["item_id"]) for c in div["candidates"]} & {0, 2, 3}
    # another user is not affected
    other = client.get(f"/i2i/{TRIGGER}", params={"k": 20, "mode": "diversity"}, headers={"X-User-Id": "bob"})
    assert other.json()["excluded_categories"] == [0]


def test_batch(client: TestClient, built: Built) -> None:
    triggers = [int(ITEM_IDS[5]), UNKNOWN_ITEM, int(ITEM_IDS[7])]
    r = client.post("/i2i:batch", json={"item_ids": triggers, "k": 4, "mode": "diversity"})
    assert r.status_code == 200
    results = r.json()["results"]
    assert [x["trigger"] for x in results] == triggers
    assert results[1]["error"] == "unknown_item" and results[1]["candidates"] == []
    for x in (results[0], results[2]):
        own = category(x["trigger"])
        assert [c["item_id"] for c in x["candidates"]] == brute_force(
            built.v1, "diversity", x["trigger"], {own}
        )[:4]


def test_batch_limits(index_root: Path, client_for: Callable[..., TestClient]) -> None:
    client = client_for(make_settings(index_root, max_batch=2))
    r = client.post("/i2i:batch", json={"item_ids": [100, 103, 106]})
    assert r.status_code == 422 and r.json()["allowed"] == {"item_ids": {"max_length": 2}}
    assert client.post("/i2i:batch", json={"item_ids": []}).status_code == 422
    assert client.post("/i2i:batch", json={"item_ids": [100], "mode": "x"}).status_code == 422


def test_u2i_from_param_and_from_events(client: TestClient) -> None:
    a, b = int(ITEM_IDS[10]), int(ITEM_IDS[11])
    r = client.get("/u2i", params={"recent_items": f"{a},{UNKNOWN_ITEM},{b}", "k": 10})
    body = r.json()
    assert r.status_code == 200 and body["triggers"] == [a, b] and body["returned"] == 10
    ids = [c["item_id"] for c in body["candidates"]]
    assert a not in ids and b not in ids and len(set(ids)) == 10
    i_a = {c["item_id"]: c["score"] for c in client.get(f"/i2i/{a}", params={"k": 40}).json()["candidates"]}
    i_b = {c["item_id"]: c["score"] for c in client.get(f"/i2i/{b}", params={"k": 40}).json()["candidates"]}
    for c in body["candidates"]:  # each item at its best score over the triggers (map scores are float16)
        best = max(i_a.get(c["item_id"], -1e9), i_b.get(c["item_id"], -1e9))
        assert c["score"] == pytest.approx(best, rel=1e-3, abs=1e-3)
    now = time.time()
    client.post("/events", json={"user_id": "carol", "events": [{"item_id": a, "timestamp": now - 1},
                                                                 {"item_id": b, "timestamp": now - 2}]},
                headers=INGEST)  # fmt: skip
    via_store = client.get("/u2i", params={"k": 10}, headers={"X-User-Id": "carol"}).json()
    assert via_store["triggers"] == [a, b]
    assert client.get("/u2i").status_code == 422  # neither a user nor recent_items


@pytest.mark.parametrize(
    ("path", "status", "error"),
    [
        (f"/i2i/{UNKNOWN_ITEM}", 404, "unknown_item"),
        ("/i2i/abc", 422, "bad_request"),
        (f"/i2i/{TRIGGER}?k=0", 422, "bad_request"),
        (f"/i2i/{TRIGGER}?k=501", 422, "bad_request"),
        (f"/i2i/{TRIGGER}?mode=fancy", 422, "bad_request"),
        (f"/i2i/{TRIGGER}?exclude_categories=1,x", 422, "bad_request"),
        (f"/i2i/{TRIGGER}?exclude_recent=maybe", 422, "bad_request"),
        ("/i2i/99999999999999999999999", 422, "bad_request"),
        ("/nowhere", 404, "not_found"),
    ],
)
def test_bad_input_gets_a_json_error_never_500(
    client: TestClient, path: str, status: int, error: str
) -> None:
    r = client.get(path)
    assert r.status_code == status
    body = r.json()
    assert body["error"] == error and body["detail"] and "allowed" in body


def test_k_error_names_the_bound(client: TestClient) -> None:
    body = client.get(f"/i2i/{TRIGGER}?k=501").json()
    assert body["allowed"] == {"k": {"ge": 1, "le": 500}}
    mode = client.get(f"/i2i/{TRIGGER}?mode=fancy").json()
    assert "general" in str(mode["allowed"]) and "diversity" in str(mode["allowed"])


def test_variants_forced_and_strategy(
    index_root: Path, client_for: Callable[..., TestClient], built: Built
) -> None:
    experiment = {"salt": "s", "variants": [
        {"name": "metric", "weight": 1, "strategy": "metric"},
        {"name": "filter", "weight": 1, "strategy": "filter"},
        {"name": "pinned", "weight": 0, "index_version": "v2"},
    ]}  # fmt: skip
    client = client_for(make_settings(index_root, experiment=experiment))
    own = category(TRIGGER)
    r = client.get(f"/i2i/{TRIGGER}?mode=diversity&k=5", headers={"X-Variant": "filter"})
    body = r.json()
    assert r.headers["x-variant"] == "filter" and body["variant"] == "filter" and body["strategy"] == "filter"
    # diversity via general embeddings + category filter
    assert [c["item_id"] for c in body["candidates"]] == brute_force(built.v1, "general", TRIGGER, {own})[:5]
    pinned = client.get(f"/i2i/{TRIGGER}?k=5", headers={"X-Variant": "pinned"}).json()
    assert pinned["index_version"] == "v2"
    assert [c["item_id"] for c in pinned["candidates"]] == brute_force(built.v2, "general", TRIGGER, set())[
        :5
    ]
    bad = client.get(f"/i2i/{TRIGGER}", headers={"X-Variant": "nope"})
    assert bad.status_code == 422 and bad.json()["allowed"] == {"variant": ["metric", "filter", "pinned"]}
    # stickiness: the same user always gets the same variant
    seen = {
        client.get(f"/i2i/{TRIGGER}?k=1", headers={"X-User-Id": "u-7"}).headers["x-variant"] for _ in range(5)
    }
    assert len(seen) == 1


def test_health_ready_and_not_ready(
    tmp_path: Path, client: TestClient, client_for: Callable[..., TestClient]
) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["version"] == "v1"
    empty = client_for(make_settings(tmp_path / "empty-root"))
    assert empty.get("/healthz").status_code == 200
    r = empty.get("/readyz")
    assert r.status_code == 503 and r.json()["error"] == "not_ready"
    r = empty.get(f"/i2i/{TRIGGER}")
    assert r.status_code == 503 and r.json()["error"] == "not_ready"


def test_admin_auth(index_root: Path, client: TestClient, client_for: Callable[..., TestClient]) -> None:
    assert client.post("/admin/reload").status_code == 403
    assert client.post("/admin/reload", headers={"Authorization": "Bearer wrong"}).status_code == 403
    ok = client.post("/admin/reload", headers={"Authorization": "Bearer s3cret"})
    assert ok.status_code == 200 and ok.json()["result"] == "unchanged"
    off = client_for(make_settings(index_root, admin_token=None))
    assert off.post("/admin/reload", headers={"Authorization": "Bearer s3cret"}).status_code == 404


def test_body_size_limit(index_root: Path, client_for: Callable[..., TestClient]) -> None:
    client = client_for(make_settings(index_root, max_body_bytes=1024))
    big = {"item_ids": list(range(100, 100 + 3 * 400, 3))}
    r = client.post("/i2i:batch", json=big)
    assert r.status_code == 413 and r.json()["allowed"] == {"max_body_bytes": 1024}


def test_events_need_a_user(client: TestClient) -> None:
    r = client.post("/events", json={"events": [{"item_id": TRIGGER}]}, headers=INGEST)
    assert r.status_code == 422 and r.json()["allowed"] == {"headers": ["X-User-Id"]}
    assert client.post("/events", json={"events": [{"item_id": TRIGGER, "behavior": "dance"}]},
                       headers={"X-User-Id": "a", **INGEST}).status_code == 422  # fmt: skip


@pytest.mark.parametrize(
    ("headers", "status", "detail"),
    [
        ({}, 401, "POST /events needs 'Authorization: Bearer <ingest_token>'"),
        ({"Authorization": "Bearer wrong"}, 401, "POST /events needs 'Authorization: Bearer <ingest_token>'"),
        (
            {"Authorization": "Basic ingest-s3cret"},
            401,
            "POST /events needs 'Authorization: Bearer <ingest_token>'",
        ),
    ],
    ids=["missing", "wrong", "not-bearer"],
)
def test_events_need_the_ingest_token(
    client: TestClient, headers: dict[str, str], status: int, detail: str
) -> None:
    r = client.post("/events", json={"user_id": "mallory", "events": [{"item_id": TRIGGER}]}, headers=headers)
    assert r.status_code == status and r.json() == {
        "error": "unauthorized",
        "detail": detail,
        "allowed": None,
    }
    assert r.headers["www-authenticate"] == "Bearer"
    # nothing was recorded: mallory's diversity answer excludes the trigger's category only
    body = client.get(f"/i2i/{TRIGGER}?mode=diversity", headers={"X-User-Id": "mallory"}).json()
    assert body["excluded_categories"] == [category(TRIGGER)]


def test_events_are_off_without_an_ingest_token(
    index_root: Path, client_for: Callable[..., TestClient]
) -> None:
    client = client_for(make_settings(index_root, ingest_token=None))
    r = client.post("/events", json={"user_id": "u", "events": [{"item_id": TRIGGER}]}, headers=INGEST)
    assert r.status_code == 403
    assert r.json() == {"error": "forbidden", "detail": "events ingestion is off (no ingest_token configured)",
                        "allowed": None}  # fmt: skip


def test_events_openapi_names_the_ingest_scheme(client: TestClient) -> None:
    post = client.get("/openapi.json").json()["paths"]["/events"]["post"]
    assert post["security"] == [{"ingest_token": []}]
    assert {"401", "403"} <= set(post["responses"])


@pytest.mark.parametrize(
    ("offset_s", "detail"),
    [
        (3600.0, "body.events.1.timestamp: 3600 s in the future (more than events_max_skew_s)"),
        (
            -2 * 86_400.0,
            "body.events.1.timestamp: 172800 s old, older than recent_ttl_s (it would not be remembered)",
        ),
    ],
    ids=["future", "past-ttl"],
)
def test_event_timestamps_outside_the_window_are_422(
    index_root: Path, client_for: Callable[..., TestClient], offset_s: float, detail: str
) -> None:
    client = client_for(make_settings(index_root, recent_ttl_s=86_400.0, events_max_skew_s=60.0))
    now = time.time()
    events = [
        {"item_id": TRIGGER, "timestamp": now},
        {"item_id": int(ITEM_IDS[1]), "timestamp": now + offset_s},
    ]
    r = client.post("/events", json={"user_id": "u", "events": events}, headers=INGEST)
    assert r.status_code == 422 and r.json()["detail"] == detail
    allowed = r.json()["allowed"]["timestamp"]
    assert allowed["le"] - allowed["ge"] == pytest.approx(86_400.0 + 60.0)
    # nothing of the refused post is kept; inside the window (skew included) it is recorded
    assert client.get("/u2i?k=3", headers={"X-User-Id": "u"}).json()["triggers"] == []
    events[1]["timestamp"] = now + 50.0
    r = client.post("/events", json={"user_id": "u", "events": events}, headers=INGEST)
    assert r.status_code == 202 and r.json()["recorded"] == 2


def test_metrics_labels_and_counts(client: TestClient) -> None:
    for _ in range(3):
        client.get(f"/i2i/{TRIGGER}?k=7&mode=diversity")
    client.get(f"/i2i/{UNKNOWN_ITEM}")
    client.get(f"/i2i/{TRIGGER}?k=0")
    text = client.get("/metrics").text
    route = "/i2i/{item_id}"
    assert (
        sample(text, "m2grl_requests_total", route=route, mode="diversity", variant="control", status="200")
        == 3
    )
    assert (
        sample(text, "m2grl_request_latency_seconds_count", route=route, mode="diversity", status="200") == 3
    )
    assert sample(text, "m2grl_requests_total", route=route, status="404") == 1
    assert sample(text, "m2grl_errors_total", reason="unknown_item") == 1
    assert sample(text, "m2grl_errors_total", reason="bad_request") == 1
    assert sample(text, "m2grl_candidates_returned_total", mode="diversity", variant="control") == 21
    assert sample(text, "m2grl_candidates_per_request_count", mode="diversity") == 3
    assert sample(text, "m2grl_index_items", mode="general") == N_ITEMS
    assert sample(text, "m2grl_index_info", version="v1", model_version="model-test") == 1
    assert sample(text, "m2grl_index_build_timestamp_seconds") > 1.6e9
    assert sample(text, "m2grl_index_reloads_total", result="success") == 1
    assert f'route="/i2i/{TRIGGER}"' not in text  # the template, never the raw path


def test_hot_routes_serve_the_documented_endpoints(client: TestClient) -> None:
    """A HotRoute answers before FastAPI's route of the same path: both must name the same function, so
    the OpenAPI document describes what is served."""
    from fastapi.routing import APIRoute

    from app.routes import HOT_ROUTES, ROUTERS, HotRoute

    assert client.app.router.routes[: len(HOT_ROUTES)] == list(HOT_ROUTES)  # type: ignore[attr-defined]
    documented = {
        (r.path, m): r.endpoint for router in ROUTERS for r in router.routes if isinstance(r, APIRoute)
        for m in r.methods or ()
    }  # fmt: skip
    for hot in HOT_ROUTES:
        assert isinstance(hot, HotRoute)
        assert documented[(hot.path, "GET")] is hot.endpoint
    schema = client.get("/openapi.json").json()
    assert {"/i2i/{item_id}", "/u2i"} <= set(schema["paths"])


def test_wrong_method_on_a_hot_route_is_a_json_405(client: TestClient) -> None:
    r = client.post(f"/i2i/{TRIGGER}")
    assert r.status_code == 405 and r.json()["error"] == "method_not_allowed"
    assert "GET" in r.headers["allow"]


def test_a_long_variant_header_is_not_echoed_in_full(
    index_root: Path, client_for: Callable[..., TestClient]
) -> None:
    client = client_for(make_settings(index_root, max_header_bytes=1 << 20))
    r = client.get(f"/i2i/{TRIGGER}", headers={"X-Variant": "v" * 60_000})
    assert r.status_code == 422
    assert (
        r.json()["detail"]
        == f"variant {'v' * 64!r}... (60000 characters) is not declared; allowed: ['control']"
    )


@pytest.mark.parametrize(
    "raw", ["3_5_6", "+356", "000356", "%20356%20", "\u0663\u0665\u0666", "35 6", "0x164"]
)
def test_item_ids_are_parsed_strictly(client: TestClient, raw: str) -> None:
    r = client.get(f"/i2i/{raw}")
    assert r.status_code == 422 and r.json()["detail"].startswith("path.item_id: expected an int64 integer")
    assert client.get(f"/i2i/{TRIGGER}").status_code == 200


def test_an_empty_boolean_is_refused(client: TestClient) -> None:
    r = client.get(f"/i2i/{TRIGGER}?exclude_recent=")
    assert r.status_code == 422 and r.json()["detail"] == "query.exclude_recent: '' is not a boolean"


def test_openapi_states_k_max_headers_and_the_admin_scheme(
    index_root: Path, client_for: Callable[..., TestClient]
) -> None:
    client = client_for(make_settings(index_root, max_k=300, user_header="X-Who"))
    schema = client.get("/openapi.json").json()
    get = schema["paths"]["/i2i/{item_id}"]["get"]
    params = {p["name"]: p for p in get["parameters"]}
    assert params["k"]["schema"]["maximum"] == 300
    assert params["item_id"]["schema"]["minimum"] == -(2**63) and isinstance(
        params["item_id"]["schema"]["maximum"], int
    )
    assert params["X-Who"]["in"] == "header" and params["X-Who"]["schema"]["maxLength"] == 256
    assert params["X-Variant"]["schema"]["enum"] == ["control"]
    batch_k = schema["components"]["schemas"]["BatchRequest"]["properties"]["k"]
    assert {"type": "integer", "minimum": 1, "maximum": 300} in batch_k["anyOf"]
    assert schema["paths"]["/admin/reload"]["post"]["security"] == [{"admin_token": []}]
    assert schema["components"]["securitySchemes"]["admin_token"]["scheme"] == "bearer"
