"""The explorer's routes (``app.routes.explore``) and the optional ``fields=title`` of ``GET /i2i``, in
process, on a version of the bundled MovieLens sample with titles and on the ids-only test index."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from core.layout import DatasetLayout
from core.titles import read_titles, titles_of
from tests.app.conftest import INGEST, ITEM_IDS, make_settings
from tests.app.movielens_index import MovieLensIndex, build_movielens_index

STATIC = Path(__file__).resolve().parents[2] / "app" / "static"
TOY_STORY = 1


@pytest.fixture(scope="module")
def movielens(tmp_path_factory: pytest.TempPathFactory) -> MovieLensIndex:
    return build_movielens_index(tmp_path_factory.mktemp("explore-ml"))


@pytest.fixture
def ml(movielens: MovieLensIndex, client_for: Callable[..., TestClient]) -> TestClient:
    return client_for(make_settings(movielens.root))


def catalogue_title(movielens: MovieLensIndex, item_id: int) -> str | None:
    table = read_titles(DatasetLayout(movielens.dataset).titles)
    assert table is not None
    return titles_of(table, [item_id])[0]


# ---------------------------------------------------------------------------------------------- the page


def test_the_page_and_its_assets_load_nothing_from_elsewhere(ml: TestClient) -> None:
    page = ml.get("/explore")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for name, media in (("explore.js", "text/javascript"), ("explore.css", "text/css")):
        asset = ml.get(f"/explore/assets/{name}")
        assert asset.status_code == 200 and asset.headers["content-type"].startswith(media)
        assert asset.content == (STATIC / name).read_bytes()
    # every file the page is made of is local: no URL with a scheme or a protocol-relative one
    for path in STATIC.iterdir():
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text, re.IGNORECASE), path.name
    assert ml.get("/explore/assets/..%2Fmain.py").status_code == 404
    assert ml.get("/explore/assets/explore.html").status_code == 404


def test_docs_pages_off_turns_the_explorer_and_the_docs_off(
    movielens: MovieLensIndex, client_for: Callable[..., TestClient]
) -> None:
    client = client_for(make_settings(movielens.root, docs_pages=False))
    for path in ("/explore", "/explore/config", "/explore/map", "/docs", "/redoc"):
        assert client.get(path).status_code == 404, path
    titled = client.get(f"/i2i/{TOY_STORY}", params={"fields": "title", "k": 2}).json()
    assert titled["candidates"][0]["title"]


def test_the_explorer_is_not_part_of_the_api_contract(ml: TestClient) -> None:
    paths = ml.get("/openapi.json").json()["paths"]
    assert not [p for p in paths if p.startswith("/explore")]
    params = {p["name"] for p in paths["/i2i/{item_id}"]["get"]["parameters"]}
    assert "fields" in params


# ---------------------------------------------------------------------------------------------- titles in /i2i


def test_fields_title_adds_the_catalogue_titles(ml: TestClient, movielens: MovieLensIndex) -> None:
    for mode in ("general", "diversity"):
        plain = ml.get(f"/i2i/{TOY_STORY}", params={"mode": mode, "k": 8}).json()
        titled = ml.get(f"/i2i/{TOY_STORY}", params={"mode": mode, "k": 8, "fields": "title"}).json()
        assert all("title" not in c for c in plain["candidates"])  # off by default
        assert [c["item_id"] for c in titled["candidates"]] == [c["item_id"] for c in plain["candidates"]]
        for c in titled["candidates"]:
            assert c["title"] == catalogue_title(movielens, c["item_id"]) and c["title"]


def test_fields_are_validated(ml: TestClient) -> None:
    bad = ml.get(f"/i2i/{TOY_STORY}", params={"fields": "title,price"})
    assert bad.status_code == 422
    assert bad.json()["allowed"] == {"fields": ["title"]} and "price" in bad.json()["detail"]
    assert ml.get(f"/i2i/{TOY_STORY}", params={"fields": ""}).status_code == 200
    # only what the documented pattern allows: no spaces, no empty names
    for value in (" title", "title,", ",title", "Title"):
        assert ml.get(f"/i2i/{TOY_STORY}", params={"fields": value}).status_code == 422, value
    assert "title" in ml.get(f"/i2i/{TOY_STORY}", params={"fields": "title,title"}).json()["candidates"][0]


def test_without_titles_the_field_is_null(client: TestClient) -> None:
    answer = client.get(f"/i2i/{int(ITEM_IDS[0])}", params={"k": 3, "fields": "title"}).json()
    assert [c["title"] for c in answer["candidates"]] == [None, None, None]


# ---------------------------------------------------------------------------------------------- explorer JSON


def test_config_names_the_real_headers_and_variants(ml: TestClient) -> None:
    config = ml.get("/explore/config").json()
    assert config["user_header"] == "X-User-Id" and config["variant_header"] == "X-Variant"
    assert config["variants"] == ["control"] and config["version"] == "ml"
    assert config["has_titles"] is True and config["has_map"] is True


def test_search_by_title_and_by_id(ml: TestClient) -> None:
    found = ml.get("/explore/search", params={"q": "toy story"}).json()["results"]
    assert [r["title"] for r in found][:1] == ["Toy Story (1995)"]
    assert {r["title"] for r in found} >= {"Toy Story (1995)", "Toy Story 2 (1999)"}
    assert all("toy story" in r["title"].lower() for r in found)
    card = found[0]
    assert card["attributes"]["category"]["label"] == "Adventure|Animation|Children|Comedy|Fantasy"
    assert card["train_count"] > 0 and card["cold"] is False and isinstance(card["x"], float)
    by_id = ml.get("/explore/search", params={"q": str(TOY_STORY)}).json()["results"]
    assert by_id[0]["item_id"] == TOY_STORY
    assert ml.get("/explore/search", params={"q": "zzzz no such film"}).json()["results"] == []
    assert ml.get("/explore/search", params={"q": "a", "limit": 1000}).status_code == 422


def test_items_and_labels(ml: TestClient) -> None:
    items = ml.get("/explore/items", params={"ids": f"{TOY_STORY},999999999"}).json()["items"]
    assert items[0]["title"] == "Toy Story (1995)" and items[1] is None
    assert ml.get("/explore/items", params={"ids": "1,x"}).status_code == 422
    assert ml.get("/explore/items", params={"ids": "1", "version": "nope"}).status_code == 404
    cat = items[0]["attributes"]["category"]["id"]
    labels = ml.get("/explore/labels", params={"ids": f"{cat},-1"}).json()["labels"]
    assert labels == {str(cat): "Adventure|Animation|Children|Comedy|Fantasy", "-1": None}


def test_map_points_carry_titles_and_category_names(ml: TestClient, movielens: MovieLensIndex) -> None:
    points = ml.get("/explore/map", params={"max_points": 500}).json()
    assert points["total"] > 5000 and len(points["ids"]) == 500
    assert len(points["x"]) == len(points["y"]) == len(points["category"]) == len(points["titles"]) == 500
    assert points["titles"][0] == catalogue_title(movielens, points["ids"][0])
    # MovieLens genres are string ids: the map speaks them, as /i2i does, and each names itself
    assert all(isinstance(c, str) for c in points["category"] if c is not None)
    assert set(points["category_labels"]) == {c for c in points["category"] if c is not None}
    assert all(name == c for c, name in points["category_labels"].items())


def test_the_ids_only_index_still_explores(client: TestClient) -> None:
    config = client.get("/explore/config").json()
    assert config["has_titles"] is False
    item = int(ITEM_IDS[3])
    found = client.get("/explore/search", params={"q": str(item)}).json()["results"]
    assert [r["item_id"] for r in found] == [item] and found[0]["title"] is None
    assert client.get("/explore/search", params={"q": "film"}).json()["results"] == []
    assert len(client.get("/explore/map").json()["ids"]) == len(ITEM_IDS)


def test_the_page_sees_what_a_client_sees(ml: TestClient) -> None:
    """The page asks /i2i with the user header: the same exclusions as any client."""
    seen = ml.get("/explore/search", params={"q": "Heat (1995)"}).json()["results"][0]
    ok = ml.post(
        "/events", json={"user_id": "viewer", "events": [{"item_id": seen["item_id"]}]}, headers=INGEST
    )
    assert ok.status_code == 202
    anonymous = ml.get(f"/i2i/{TOY_STORY}", params={"mode": "diversity"}).json()["excluded_categories"]
    viewer = ml.get(
        f"/i2i/{TOY_STORY}", params={"mode": "diversity"}, headers={"X-User-Id": "viewer"}
    ).json()["excluded_categories"]
    assert set(viewer) - set(anonymous) == {seen["attributes"]["category"]["id"]}
