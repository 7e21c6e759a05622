"""The user's own ids end to end in process: a version built from a dataset with string item and category
ids (``tests/app/conftest.build_labelled_version``) is asked and answers in those strings on every route,
while an integer-id version keeps refusing strings as before."""

from __future__ import annotations

from collections.abc import Callable, Collection
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from tests.app.conftest import (
    CATEGORIES,
    CATEGORY_LABELS,
    INGEST,
    ITEM_IDS,
    ITEM_LABELS,
    SHOPS,
    Vectors,
    make_settings,
)

TRIGGER = "B07-abc"


@pytest.fixture
def client(labelled_root: Path, client_for: Callable[..., TestClient]) -> TestClient:
    return client_for(make_settings(labelled_root))


@pytest.fixture
def vectors(labelled_built: tuple[Path, Vectors]) -> Vectors:
    return labelled_built[1]


def ranked(vectors: Vectors, mode: str, label: str, excluded: Collection[str] = ()) -> list[str]:
    """Every other item's label, best first by the mode's score, without the ``excluded`` categories."""
    row = ITEM_LABELS.index(label)
    if mode == "general":
        scores = vectors.general @ vectors.general[row]
    else:
        scores = -((vectors.diversity - vectors.diversity[row]) ** 2).sum(axis=1)
    order = np.argsort(-scores, kind="stable")
    return [ITEM_LABELS[r] for r in order if r != row and CATEGORY_LABELS[CATEGORIES[r]] not in excluded]


def category(label: str) -> str:
    return CATEGORY_LABELS[CATEGORIES[ITEM_LABELS.index(label)]]


def test_i2i_takes_and_returns_labels(client: TestClient, vectors: Vectors) -> None:
    r = client.get(f"/i2i/{TRIGGER}", params={"k": 5})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["trigger"] == TRIGGER and body["excluded_categories"] == []
    assert [c["item_id"] for c in body["candidates"]] == ranked(vectors, "general", TRIGGER)[:5]
    for c in body["candidates"]:
        row = ITEM_LABELS.index(c["item_id"])
        # the side view with string ids answers labels, the one without keeps its integers
        assert c["attributes"] == {"category": CATEGORY_LABELS[CATEGORIES[row]], "shop": int(SHOPS[row])}
    diversity = client.get(f"/i2i/{TRIGGER}", params={"k": 5, "mode": "diversity"}).json()
    assert diversity["excluded_categories"] == [category(TRIGGER)]
    assert [c["item_id"] for c in diversity["candidates"]] == ranked(
        vectors, "diversity", TRIGGER, {category(TRIGGER)}
    )[:5]
    titled = client.get(f"/i2i/{TRIGGER}", params={"k": 2, "fields": "title"}).json()
    assert [c["title"] for c in titled["candidates"]] == [None, None]


@pytest.mark.parametrize("raw", ["B07-nope", "3", "b07-abc"])
def test_an_unknown_label_is_a_one_line_404(client: TestClient, raw: str) -> None:
    r = client.get(f"/i2i/{raw}")
    assert r.status_code == 404
    assert r.json() == {
        "error": "unknown_item",
        "detail": f"item {raw!r} is not in the index",
        "allowed": None,
    }
    assert b"\n" not in r.content


def test_exclude_categories_by_label(client: TestClient, vectors: Vectors) -> None:
    r = client.get(f"/i2i/{TRIGGER}", params={"k": 20, "exclude_categories": "books,garden,no-such-category"})
    body = r.json()
    assert r.status_code == 200 and body["excluded_categories"] == ["books", "garden"]
    assert {c["attributes"]["category"] for c in body["candidates"]}.isdisjoint({"books", "garden"})
    assert [c["item_id"] for c in body["candidates"]] == ranked(
        vectors, "general", TRIGGER, {"books", "garden"}
    )[:20]


def test_events_with_labels_then_i2i_excludes_their_category(client: TestClient) -> None:
    seen = next(label for label in ITEM_LABELS if category(label) not in (category(TRIGGER),))
    r = client.post(
        "/events", headers=INGEST,
        json={"user_id": "u1", "events": [{"item_id": seen}, {"item_id": "B09-unknown"}, {"item_id": 5}]},
    )  # fmt: skip
    assert r.status_code == 202, r.text
    # a number sent to a version of string ids is read as its text: no item is called "5"
    assert r.json() == {"user_id": "u1", "recorded": 1, "unknown_items": ["5", "B09-unknown"],
                        "categories": [category(seen)]}  # fmt: skip
    user = {"X-User-Id": "u1"}
    diversity = client.get(f"/i2i/{TRIGGER}", params={"mode": "diversity", "k": 10}, headers=user).json()
    assert diversity["excluded_categories"] == sorted({category(TRIGGER), category(seen)})
    assert all(
        c["attributes"]["category"] not in diversity["excluded_categories"] for c in diversity["candidates"]
    )
    general = client.get(f"/i2i/{TRIGGER}", params={"k": 10, "exclude_recent": "true"}, headers=user).json()
    assert general["excluded_categories"] == [category(seen)]
    assert all(c["attributes"]["category"] != category(seen) for c in general["candidates"])
    # the user's recent items are /u2i's triggers, named as the client named them
    u2i = client.get("/u2i", params={"k": 4}, headers=user).json()
    assert u2i["triggers"] == [seen] and u2i["returned"] == 4
    assert all(isinstance(c["item_id"], str) and c["item_id"] != seen for c in u2i["candidates"])


def test_u2i_recent_items_by_label(client: TestClient) -> None:
    second = ITEM_LABELS[7]
    r = client.get("/u2i", params={"recent_items": f"{TRIGGER},nope,{second}", "k": 6})
    body = r.json()
    assert r.status_code == 200 and body["triggers"] == [TRIGGER, second]
    assert len(body["candidates"]) == 6 and not {TRIGGER, second} & {c["item_id"] for c in body["candidates"]}


def test_batch_by_label(client: TestClient, vectors: Vectors) -> None:
    r = client.post(
        "/i2i:batch", json={"item_ids": [TRIGGER, "nope"], "k": 3, "exclude_categories": ["books"]}
    )
    assert r.status_code == 200, r.text
    first, unknown = r.json()["results"]
    assert first["trigger"] == TRIGGER and first["error"] is None
    assert [c["item_id"] for c in first["candidates"]] == ranked(vectors, "general", TRIGGER, {"books"})[:3]
    assert unknown == {"trigger": "nope", "error": "unknown_item", "exhausted": False, "candidates": []}


def test_feedback_takes_labels(client: TestClient) -> None:
    answer = client.get(f"/i2i/{TRIGGER}", params={"k": 2}).json()
    events = [{"item_id": c["item_id"], "kind": "impression"} for c in answer["candidates"]]
    r = client.post("/feedback", json={"request_id": answer["request_id"], "events": events}, headers=INGEST)
    assert r.status_code == 202 and r.json()["impressions"] == 2


def test_the_explorer_speaks_labels(client: TestClient) -> None:
    found = client.get("/explore/search", params={"q": TRIGGER}).json()["results"]
    assert [c["item_id"] for c in found] == [TRIGGER]
    assert found[0]["attributes"]["category"] == {"id": category(TRIGGER), "label": category(TRIGGER)}
    assert found[0]["attributes"]["shop"]["id"] == int(SHOPS[0])
    # a dense id is not an id a client knows
    assert client.get("/explore/search", params={"q": "0"}).json()["results"] == []
    items = client.get("/explore/items", params={"ids": f"{ITEM_LABELS[2]},nope"}).json()["items"]
    assert items[0]["item_id"] == ITEM_LABELS[2] and items[1] is None
    assert client.get("/explore/labels", params={"ids": "books,nope"}).json()["labels"] == {
        "books": "books", "nope": None,
    }  # fmt: skip
    points = client.get("/explore/map").json()
    assert sorted(points["ids"]) == sorted(ITEM_LABELS)
    assert set(points["category"]) == set(CATEGORY_LABELS) == set(points["category_labels"])


def test_openapi_documents_string_ids(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    params = {p["name"]: p for p in schema["paths"]["/i2i/{item_id}"]["get"]["parameters"]}
    assert params["item_id"]["schema"] == {"type": "string", "minLength": 1}
    assert params["exclude_categories"]["schema"] == {"type": "string"}
    candidate = schema["components"]["schemas"]["CandidateOut"]["properties"]["item_id"]
    assert {"type": "string"} in candidate["anyOf"] and "string id" in candidate["description"]


def test_an_integer_version_still_refuses_strings(
    index_root: Path, client_for: Callable[..., TestClient]
) -> None:
    client = client_for(make_settings(index_root))
    trigger = int(ITEM_IDS[0])
    r = client.post("/i2i:batch", json={"item_ids": [trigger, "B07-abc"]})
    assert r.status_code == 422 and r.json()["detail"].startswith(
        "body.item_ids.1: expected an int64 integer"
    )
    r = client.post("/events", json={"user_id": "u", "events": [{"item_id": "B07-abc"}]}, headers=INGEST)
    assert r.status_code == 422 and r.json()["detail"].startswith("body.events.0.item_id")
    assert client.get("/i2i/B07-abc").status_code == 422
    assert isinstance(client.get(f"/i2i/{trigger}").json()["candidates"][0]["item_id"], int)
    params = {
        p["name"]: p
        for p in client.get("/openapi.json").json()["paths"]["/i2i/{item_id}"]["get"]["parameters"]
    }
    assert params["item_id"]["schema"]["format"] == "int64"
