"""The explorer page in a real browser: the real service under uvicorn on a version of the bundled
MovieLens sample, driven by headless Chromium (Debian's ``chromium`` + ``chromium-driver``, installed by
``scripts/install_system_deps.sh``) through Selenium, with every host but the loopback unreachable.

The screenshot goes to ``$M2GRL_EXPLORER_SCREENSHOT`` when set (to keep it), else under the test's
temporary folder.
"""

from __future__ import annotations

import io
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from selenium import webdriver
from selenium.webdriver.chrome.service import Service as DriverService
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.actions.wheel_input import ScrollOrigin
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select, WebDriverWait

from tests.app.conftest import INGEST, INGEST_TOKEN
from tests.app.movielens_index import MovieLensIndex, build_movielens_index
from tests.app.server import run_service

pytestmark = pytest.mark.slow

EXPERIMENT = {
    "salt": "explore",
    "variants": [
        {"name": "control", "weight": 1.0},
        {"name": "filtered", "weight": 1.0, "strategy": "filter", "channels": {"m2grl": 1.0}},
    ],
}
WAIT_S = 30


def binary(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"`{name}` not found: run `bash scripts/install_system_deps.sh`", pytrace=False)
    return found


@pytest.fixture(scope="module")
def movielens(tmp_path_factory: pytest.TempPathFactory) -> MovieLensIndex:
    return build_movielens_index(tmp_path_factory.mktemp("explore-browser"))


@pytest.fixture(scope="module")
def service(movielens: MovieLensIndex, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("explore-log") / "service.log"
    settings = {"ingest_token": INGEST_TOKEN, "experiment": EXPERIMENT}
    with run_service(movielens.root, settings=settings, log_path=log) as base:
        yield base


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    options.binary_location = binary("chromium")
    for arg in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1060",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        # the network is off: every host name but the loopback fails to resolve
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    ):  # fmt: skip
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=DriverService(binary("chromedriver")), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def body_attr(driver: WebDriver, name: str) -> str:
    return driver.find_element(By.TAG_NAME, "body").get_attribute(name) or ""


def wait_loads(driver: WebDriver, count: int) -> None:
    """Wait until the page finished its ``count``-th rendering of a trigger."""
    WebDriverWait(driver, WAIT_S).until(
        lambda d: body_attr(d, "data-loads") == str(count) and body_attr(d, "data-state") == "ready"
    )


def column(driver: WebDriver, mode: str) -> list[tuple[int, str]]:
    """``(item id, shown name)`` of each candidate of a column, in order."""
    rows = driver.find_elements(By.CSS_SELECTOR, f"#col-{mode} li.candidate")
    return [
        (int(r.get_attribute("data-item") or 0), r.find_element(By.CLASS_NAME, "name").text) for r in rows
    ]


def excluded(driver: WebDriver, mode: str) -> list[str]:
    """The excluded categories the page shows, as text (MovieLens genres are string ids)."""
    raw = driver.find_element(By.ID, f"excluded-{mode}").get_attribute("data-categories") or ""
    return [c for c in raw.split(",") if c]


def api(base: str, trigger: int, mode: str, k: int, headers: dict[str, str] | None = None) -> dict:
    r = httpx.get(f"{base}/i2i/{trigger}", params={"mode": mode, "k": k, "fields": "title"}, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


def shown_variant(driver: WebDriver, mode: str) -> str:
    meta = driver.find_element(By.CSS_SELECTOR, f"#col-{mode} .meta").text
    assert meta.startswith("variant "), meta
    return meta.split()[1]


def assert_columns_match(driver: WebDriver, base: str, trigger: int, k: int, headers: dict[str, str]) -> None:
    """Each column shows what ``GET /i2i`` answers with ``headers``. Without a user (and no forced
    variant) the service draws a variant per request, so the answer is asked for the variant shown."""
    for mode in ("general", "diversity"):
        variant = shown_variant(driver, mode)
        sticky = "X-User-Id" in headers or "X-Variant" in headers
        answer = api(base, trigger, mode, k, headers if sticky else {"X-Variant": variant})
        assert answer["variant"] == variant, mode
        assert len(answer["candidates"]) == k
        shown = column(driver, mode)
        assert [i for i, _ in shown] == [c["item_id"] for c in answer["candidates"]], mode
        assert [name for _, name in shown] == [c["title"] for c in answer["candidates"]], mode
        assert excluded(driver, mode) == [str(c) for c in answer["excluded_categories"]], mode


def trigger_on_map(driver: WebDriver) -> tuple[float, float]:
    """Where the page drew the trigger, in CSS pixels from the canvas's top left corner."""
    raw = driver.find_element(By.ID, "map").get_attribute("data-trigger") or ""
    x, y = raw.split(",")
    return float(x), float(y)


def hover_map(driver: WebDriver, x: float, y: float) -> None:
    canvas = driver.find_element(By.ID, "map")
    size = canvas.size
    # offsets of move_to_element_with_offset are from the element's centre
    dx, dy = round(x - size["width"] / 2), round(y - size["height"] / 2)
    ActionChains(driver).move_to_element_with_offset(canvas, dx, dy).perform()


def screenshot_path(tmp_path: Path) -> Path:
    wanted = os.environ.get("M2GRL_EXPLORER_SCREENSHOT")
    path = Path(wanted) if wanted else tmp_path / "explorer.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def test_explore_in_a_browser(service: str, browser: WebDriver, tmp_path: Path) -> None:
    browser.get(f"{service}/explore")
    WebDriverWait(browser, WAIT_S).until(lambda d: body_attr(d, "data-state") == "idle")
    k = int(browser.find_element(By.ID, "k").get_attribute("value") or 0)
    assert k == 10

    # find a film by its title and pick it
    browser.find_element(By.ID, "search").send_keys("toy story")
    browser.find_element(By.ID, "search-go").click()
    WebDriverWait(browser, WAIT_S).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#results li")) >= 3)
    results = browser.find_elements(By.CSS_SELECTOR, "#results li")
    assert all("toy story" in r.text.lower() for r in results)
    results[0].click()
    wait_loads(browser, 1)
    trigger = int(browser.find_element(By.ID, "card").get_attribute("data-item") or 0)
    assert trigger == 1 and browser.find_element(By.ID, "card-title").text == "Toy Story (1995)"
    card = browser.find_element(By.ID, "card").text
    assert "Adventure|Animation|Children|Comedy|Fantasy" in card and "warm (" in card

    # both columns hold what GET /i2i answers a client without a user: k candidates, titles, exclusions
    assert_columns_match(browser, service, trigger, k, {})
    own = api(service, trigger, "diversity", k)["excluded_categories"]
    assert len(own) == 1  # diversity mode alone excludes the trigger's own category
    assert {"m2grl", "cooc", "popular"} >= {
        c.text for c in browser.find_elements(By.CSS_SELECTOR, "#col-general .channel")
    } and browser.find_elements(By.CSS_SELECTOR, "#col-general .channel")

    # a user who has just watched two films of other categories (diversity candidates never share the
    # trigger's): their categories join the exclusions
    seen = [item for item, _ in column(browser, "diversity")[:2]]
    ok = httpx.post(
        f"{service}/events", headers=INGEST,
        json={"user_id": "explorer-user", "events": [{"item_id": i} for i in seen]},
    )  # fmt: skip
    assert ok.status_code == 202
    user_box = browser.find_element(By.ID, "user")
    user_box.send_keys("explorer-user", Keys.TAB)
    wait_loads(browser, 2)
    user_headers = {"X-User-Id": "explorer-user"}
    assert_columns_match(browser, service, trigger, k, user_headers)
    now = excluded(browser, "diversity")
    assert set(own) < set(now) and now != own
    chips = [c.text for c in browser.find_elements(By.CSS_SELECTOR, "#excluded-diversity .chip")]
    assert len(chips) == len(now) and "Adventure|Animation|Children|Comedy|Fantasy" in chips

    # forcing a variant sends the variant header: the page shows that variant's answers
    Select(browser.find_element(By.ID, "variant")).select_by_value("filtered")
    wait_loads(browser, 3)
    assert_columns_match(browser, service, trigger, k, {**user_headers, "X-Variant": "filtered"})
    meta = browser.find_element(By.CSS_SELECTOR, "#col-diversity .meta").text
    assert meta.startswith("variant filtered (filter)")
    assert {c.text for c in browser.find_elements(By.CSS_SELECTOR, "#col-general .channel")} == {"m2grl"}

    # the map: hovering the trigger names it; the wheel zooms around the cursor, moving the trigger away
    canvas = browser.find_element(By.ID, "map")
    before = trigger_on_map(browser)
    hover_map(browser, before[0] + 2, before[1] + 2)
    WebDriverWait(browser, WAIT_S).until(lambda d: d.find_element(By.ID, "tooltip").is_displayed())
    assert browser.find_element(By.ID, "tooltip").text == "Toy Story (1995) · 1"
    ActionChains(browser).scroll_from_origin(ScrollOrigin.from_element(canvas, -150, -100), 0, -400).perform()
    WebDriverWait(browser, WAIT_S).until(lambda d: trigger_on_map(d) != before)
    after = trigger_on_map(browser)
    size = canvas.size
    cursor = (size["width"] / 2 - 150, size["height"] / 2 - 100)
    # zooming in about the cursor: the trigger ends farther from it than it was
    assert np.hypot(after[0] - cursor[0], after[1] - cursor[1]) > 1.5 * np.hypot(
        before[0] - cursor[0], before[1] - cursor[1]
    )
    browser.find_element(By.ID, "map-reset").click()
    WebDriverWait(browser, WAIT_S).until(lambda d: trigger_on_map(d) == before)

    # the map was drawn and the page asked nothing of any other host
    note = browser.find_element(By.ID, "map-note").text
    assert note.startswith("PCA of the general-mode vectors")
    problems = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert problems == []

    path = screenshot_path(tmp_path)
    assert browser.save_screenshot(str(path))
    image = Image.open(io.BytesIO(path.read_bytes())).convert("RGB")
    assert image.size[0] >= 1000 and image.size[1] >= 800
    pixels = np.asarray(image).reshape(-1, 3)
    colours, counts = np.unique(pixels, axis=0, return_counts=True)
    # text, chips and a map coloured by category: hundreds of colours, no single one covering the page
    assert len(colours) > 300 and counts.max() / len(pixels) < 0.8


def test_explore_string_ids_in_a_browser(labelled_root: Path, browser: WebDriver, tmp_path: Path) -> None:
    """A version built from string ids: the page searches, selects and asks /i2i by label (URL-encoded),
    and shows the labels the API answers."""
    with run_service(labelled_root, log_path=tmp_path / "log") as base:
        browser.get(f"{base}/explore")
        WebDriverWait(browser, WAIT_S).until(lambda d: body_attr(d, "data-state") == "idle")
        browser.find_element(By.ID, "search").send_keys("B07-abc")
        browser.find_element(By.ID, "search-go").click()
        wait_loads(browser, 1)
        assert browser.find_element(By.ID, "card").get_attribute("data-item") == "B07-abc"
        for mode in ("general", "diversity"):
            answer = httpx.get(f"{base}/i2i/B07-abc", params={"mode": mode, "k": 10}).json()
            rows = browser.find_elements(By.CSS_SELECTOR, f"#col-{mode} li.candidate")
            assert [r.get_attribute("data-item") for r in rows] == [
                c["item_id"] for c in answer["candidates"]
            ]
            assert excluded(browser, mode) == answer["excluded_categories"]
        chips = [c.text for c in browser.find_elements(By.CSS_SELECTOR, "#excluded-diversity .chip")]
        assert chips == excluded(browser, "diversity")  # a string id names itself
        rows[0].click()  # a candidate's label becomes the trigger
        wait_loads(browser, 2)
        assert (
            browser.find_element(By.ID, "card").get_attribute("data-item")
            == answer["candidates"][0]["item_id"]
        )
        assert [e for e in browser.get_log("browser") if e["level"] == "SEVERE"] == []
