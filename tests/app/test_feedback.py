"""Request ids (``app.feedback``) and ``POST /feedback``: signing round trip, forged and expired ids,
every 4xx of the route, and the per-variant counters it feeds."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from app.feedback import (
    MAX_REQUEST_ID_CHARS,
    InvalidRequestId,
    RequestIdClaims,
    issue_request_id,
    read_request_id,
    with_feedback_secret,
)
from app.schemas import MAX_FEEDBACK_EVENTS
from tests.app.conftest import ITEM_IDS, make_settings
from tests.app.test_routes import sample

SECRET = "feedback-secret-0123456789"
TOKEN = "ingest-s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
TRIGGER = int(ITEM_IDS[0])
NOW = 1_700_000_000.0
DAY = 86_400.0
TWO_ARMS = {
    "salt": "s",
    "variants": [{"name": "control", "weight": 1.0}, {"name": "treatment", "weight": 1.0}],
}


# --- request ids -----------------------------------------------------------------------------------


def test_request_id_round_trip_reads_back_variant_mode_and_issue_second() -> None:
    rid = issue_request_id(SECRET, "treatment", "diversity", NOW + 0.7)
    assert read_request_id(SECRET, rid, NOW + 10, max_age_s=DAY) == RequestIdClaims(
        "treatment", "diversity", int(NOW)
    )
    variant, mode, issued = read_request_id(SECRET, rid, NOW, max_age_s=DAY)
    assert (variant, mode, issued) == ("treatment", "diversity", 1_700_000_000)
    # url-safe: travels in a header and a JSON string unescaped
    assert set(rid) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")


def _signed(payload: bytes, mac: bytes) -> str:
    return (
        base64.urlsafe_b64encode(payload).rstrip(b"=").decode()
        + "."
        + base64.urlsafe_b64encode(mac).rstrip(b"=").decode()
    )


def _blake2b_mac(payload: bytes) -> bytes:
    """The MAC computed by hand: keyed BLAKE2b (128 bits) under the key derived from ``SECRET``."""
    key = hashlib.blake2b(SECRET.encode(), person=b"m2grl-request").digest()
    return hashlib.blake2b(payload, key=key, digest_size=16).digest()


def test_the_mac_is_keyed_blake2b_of_the_payload() -> None:
    rid = issue_request_id(SECRET, "control", "general", NOW)
    head, _, tail = rid.partition(".")
    payload = base64.urlsafe_b64decode(head + "=" * (-len(head) % 4))
    assert base64.urlsafe_b64decode(tail + "=" * (-len(tail) % 4)) == _blake2b_mac(payload)
    assert payload.startswith(b"control|general|1700000000|")


def test_ids_signed_by_the_earlier_hmac_still_verify() -> None:
    # answers served before the upgrade: their feedback is not refused as forged
    payload = b"treatment|general|1700000000|abc0"
    legacy = hmac.new(SECRET.encode(), payload, hashlib.sha256).digest()[:16]
    assert read_request_id(SECRET, _signed(payload, legacy), NOW, max_age_s=DAY).variant == "treatment"
    other = hmac.new(b"another-secret-0123456789", payload, hashlib.sha256).digest()[:16]
    with pytest.raises(InvalidRequestId, match="signature"):
        read_request_id(SECRET, _signed(payload, other), NOW, max_age_s=DAY)


def test_a_secret_longer_than_blake2b_keys_signs_and_verifies() -> None:
    long_secret = "s" * 200  # BLAKE2b keys are at most 64 bytes: the key is derived from the secret
    rid = issue_request_id(long_secret, "control", "general", NOW)
    assert read_request_id(long_secret, rid, NOW, max_age_s=DAY).mode == "general"
    with pytest.raises(InvalidRequestId, match="signature"):
        read_request_id("s" * 199, rid, NOW, max_age_s=DAY)


def test_two_ids_of_the_same_second_differ() -> None:
    assert issue_request_id(SECRET, "control", "general", NOW) != issue_request_id(
        SECRET, "control", "general", NOW
    )


def _forge(rid: str, payload: bytes) -> str:
    """``rid``'s signature on another payload."""
    return base64.urlsafe_b64encode(payload).rstrip(b"=").decode() + "." + rid.split(".")[1]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda rid: _forge(rid, f"treatment|general|{int(NOW)}|000000000000".encode()), "signature"),
        (lambda rid: issue_request_id("another-secret-0123456789", "control", "general", NOW), "signature"),
        (lambda rid: rid[:-2] + ("AA" if rid[-2:] != "AA" else "BB"), "signature"),
        (lambda rid: rid.replace(".", ""), "malformed"),
        (lambda rid: rid + ".x", "malformed"),
        (lambda rid: "!!!." + rid.split(".")[1], "malformed"),
        (lambda rid: "a" * (MAX_REQUEST_ID_CHARS + 1), "longer than"),
    ],
    ids=["payload-swapped", "other-secret", "mac-altered", "no-dot", "extra-part", "not-base64", "too-long"],
)
def test_forged_or_malformed_ids_are_refused(make: Callable[[str], str], message: str) -> None:
    rid = issue_request_id(SECRET, "control", "general", NOW)
    with pytest.raises(InvalidRequestId, match=message):
        read_request_id(SECRET, make(rid), NOW, max_age_s=DAY)


def test_a_well_signed_but_malformed_payload_is_refused() -> None:
    payload = b"control|general|yesterday|00"
    rid = _signed(payload, _blake2b_mac(payload))
    with pytest.raises(InvalidRequestId, match="malformed payload"):
        read_request_id(SECRET, rid, NOW, max_age_s=DAY)


def test_expiry_and_future_bounds_are_inclusive() -> None:
    rid = issue_request_id(SECRET, "control", "general", NOW)
    assert read_request_id(SECRET, rid, NOW + DAY, max_age_s=DAY).issued == int(NOW)
    with pytest.raises(InvalidRequestId, match="expired: issued 86401 s ago"):
        read_request_id(SECRET, rid, NOW + DAY + 1, max_age_s=DAY)
    # issued by a replica whose clock runs ahead: accepted within the skew only
    assert read_request_id(SECRET, rid, NOW - 300, max_age_s=DAY, max_skew_s=300).variant == "control"
    with pytest.raises(InvalidRequestId, match="in the future"):
        read_request_id(SECRET, rid, NOW - 301, max_age_s=DAY, max_skew_s=300)


def test_a_separator_in_a_variant_or_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="must not contain"):
        issue_request_id(SECRET, "a|b", "general", NOW)


def test_missing_secret_is_generated_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    configured = make_settings(tmp_path, feedback_secret=SECRET)
    assert with_feedback_secret(configured) is configured
    with caplog.at_level(logging.WARNING, logger="m2grl.app"):
        a = with_feedback_secret(make_settings(tmp_path))
        b = with_feedback_secret(make_settings(tmp_path))
    assert a.feedback_secret and b.feedback_secret and a.feedback_secret != b.feedback_secret
    assert len(a.feedback_secret) >= 32
    assert "M2GRL_FEEDBACK_SECRET" in caplog.text and "replicas" in caplog.text


@pytest.mark.parametrize(
    ("field", "value"), [("ingest_token", "  "), ("feedback_secret", "short"), ("feedback_max_age_s", 0)]
)
def test_bad_feedback_settings_stop_start_up(tmp_path: Path, field: str, value: Any) -> None:
    with pytest.raises(ValidationError, match=field):
        make_settings(tmp_path, **{field: value})


# --- request ids on the answers ----------------------------------------------------------------------


@pytest.fixture
def fb_client(index_root: Path, client_for: Callable[..., TestClient]) -> TestClient:
    return client_for(
        make_settings(index_root, ingest_token=TOKEN, feedback_secret=SECRET, experiment=TWO_ARMS)
    )


def _claims(rid: str) -> RequestIdClaims:
    return read_request_id(SECRET, rid, time.time(), max_age_s=DAY)


def test_every_retrieval_answer_carries_its_signed_request_id(fb_client: TestClient) -> None:
    answers = [
        fb_client.get(f"/i2i/{TRIGGER}", params={"mode": "diversity", "k": 3},
                      headers={"X-Variant": "treatment"}),
        fb_client.post("/i2i:batch", json={"item_ids": [TRIGGER], "mode": "general", "k": 3},
                       headers={"X-Variant": "treatment"}),
        fb_client.get("/u2i", params={"recent_items": str(TRIGGER), "mode": "general", "k": 3},
                      headers={"X-Variant": "control"}),
    ]  # fmt: skip
    for r, (variant, mode) in zip(
        answers, [("treatment", "diversity"), ("treatment", "general"), ("control", "general")], strict=True
    ):
        assert r.status_code == 200, r.text
        rid = r.json()["request_id"]
        assert r.headers["x-request-id"] == rid
        claims = _claims(rid)
        assert (claims.variant, claims.mode) == (variant, mode)
        assert abs(claims.issued - time.time()) < 3600  # a unix time, not a counter


def test_ids_verify_on_another_replica_with_the_same_secret_only(
    fb_client: TestClient, index_root: Path, client_for: Callable[..., TestClient]
) -> None:
    rid = fb_client.get(f"/i2i/{TRIGGER}").json()["request_id"]
    body = {"request_id": rid, "events": [{"item_id": TRIGGER, "kind": "impression"}]}
    twin = client_for(
        make_settings(index_root, ingest_token=TOKEN, feedback_secret=SECRET, experiment=TWO_ARMS)
    )
    assert twin.post("/feedback", json=body, headers=AUTH).status_code == 202
    stranger = client_for(
        make_settings(index_root, ingest_token=TOKEN, feedback_secret="x" * 20, experiment=TWO_ARMS)
    )
    r = stranger.post("/feedback", json=body, headers=AUTH)
    assert r.status_code == 422 and "signature does not match" in r.json()["detail"]


# --- POST /feedback ----------------------------------------------------------------------------------


def _served(client: TestClient, variant: str = "control", mode: str = "general") -> tuple[str, list[int]]:
    r = client.get(f"/i2i/{TRIGGER}", params={"mode": mode, "k": 5}, headers={"X-Variant": variant})
    return r.json()["request_id"], [c["item_id"] for c in r.json()["candidates"]]


def _counts(client: TestClient, variant: str, mode: str) -> tuple[float, float]:
    text = client.get("/metrics").text
    return (
        sample(text, "m2grl_feedback_impressions_total", variant=variant, mode=mode),
        sample(text, "m2grl_feedback_clicks_total", variant=variant, mode=mode),
    )


def test_feedback_is_counted_per_variant_and_mode(fb_client: TestClient) -> None:
    rid, items = _served(fb_client, "treatment", "diversity")
    events = [{"item_id": i, "kind": "impression"} for i in items]
    events.append({"item_id": items[1], "kind": "click", "timestamp": time.time()})
    r = fb_client.post("/feedback", json={"request_id": rid, "events": events}, headers=AUTH)
    assert r.status_code == 202, r.text
    assert r.json() == {"variant": "treatment", "mode": "diversity", "impressions": 5, "clicks": 1}
    assert _counts(fb_client, "treatment", "diversity") == (5.0, 1.0)
    rid2, items2 = _served(fb_client, "treatment", "diversity")
    fb_client.post("/feedback", json={"request_id": rid2, "events": [{"item_id": items2[0], "kind": "click"}]},
                   headers=AUTH)  # fmt: skip
    assert _counts(fb_client, "treatment", "diversity") == (5.0, 2.0)
    # the other arms are untouched, and exist at 0 from start-up (increase() needs the zero)
    assert _counts(fb_client, "control", "general") == (0.0, 0.0)
    assert (
        'm2grl_feedback_impressions_total{mode="general",variant="control"} 0.0'
        in fb_client.get("/metrics").text
    )


def _post(client: TestClient, body: Any, headers: dict[str, str] | None = AUTH) -> Any:
    return client.post("/feedback", json=body, headers=headers)


def test_feedback_off_without_an_ingest_token_is_403(
    index_root: Path, client_for: Callable[..., TestClient]
) -> None:
    client = client_for(make_settings(index_root, feedback_secret=SECRET, ingest_token=None))
    rid, items = _served(client)
    r = _post(client, {"request_id": rid, "events": [{"item_id": items[0], "kind": "impression"}]})
    assert r.status_code == 403
    assert r.json() == {"error": "forbidden", "detail": "feedback is off (no ingest_token configured)",
                        "allowed": None}  # fmt: skip


@pytest.mark.parametrize(
    "headers",
    [
        None,
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": "Bearer "},
    ],
    ids=["missing", "wrong", "not-bearer", "empty"],
)
def test_missing_or_wrong_token_is_401(fb_client: TestClient, headers: dict[str, str] | None) -> None:
    rid, items = _served(fb_client)
    r = _post(fb_client, {"request_id": rid, "events": [{"item_id": items[0], "kind": "click"}]}, headers)
    assert r.status_code == 401
    assert r.json()["error"] == "unauthorized" and "Bearer <ingest_token>" in r.json()["detail"]
    assert r.headers["www-authenticate"] == "Bearer"
    assert _counts(fb_client, "control", "general") == (0.0, 0.0)


def test_authentication_comes_before_body_validation(fb_client: TestClient) -> None:
    assert _post(fb_client, {"nonsense": True}, None).status_code == 401


def _ok_body(client: TestClient) -> dict[str, Any]:
    rid, items = _served(client)
    return {"request_id": rid, "events": [{"item_id": items[0], "kind": "impression"}]}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda b: b.update(events=[]), "body.events"),
        (lambda b: b.update(extra=1), "body.extra"),
        (lambda b: b["events"][0].update(kind="purchase"), "body.events.0.kind"),
        (lambda b: b["events"][0].update(item_id="5"), "body.events.0.item_id"),
        (lambda b: b["events"][0].update(item_id=2**63), "body.events.0.item_id"),
        (lambda b: b["events"][0].update(timestamp="now"), "body.events.0.timestamp"),
        (lambda b: b.pop("request_id"), "body.request_id"),
        (lambda b: b.update(request_id="x" * (MAX_REQUEST_ID_CHARS + 1)), "body.request_id"),
    ],
    ids=[
        "empty",
        "extra-field",
        "bad-kind",
        "string-id",
        "int64-overflow",
        "bad-timestamp",
        "no-id",
        "long-id",
    ],
)
def test_bad_bodies_are_422_naming_the_field(
    fb_client: TestClient, change: Callable[[dict[str, Any]], Any], field: str
) -> None:
    body = _ok_body(fb_client)
    change(body)
    r = _post(fb_client, body)
    assert r.status_code == 422, r.text
    assert r.json()["error"] == "bad_request" and r.json()["detail"].startswith(field)


def test_more_events_than_allowed_is_413(fb_client: TestClient) -> None:
    body = _ok_body(fb_client)
    body["events"] = body["events"] * (MAX_FEEDBACK_EVENTS + 1)
    r = _post(fb_client, body)
    assert r.status_code == 413
    assert r.json()["error"] == "payload_too_large"
    assert r.json()["allowed"] == {"events": {"max_length": MAX_FEEDBACK_EVENTS}}
    body["events"] = body["events"][:MAX_FEEDBACK_EVENTS]
    assert _post(fb_client, body).status_code == 202


def test_forged_and_expired_request_ids_are_422(fb_client: TestClient) -> None:
    body = _ok_body(fb_client)
    forged = {
        **body,
        "request_id": _forge(body["request_id"], f"treatment|general|{int(time.time())}|00".encode()),
    }
    r = _post(fb_client, forged)
    assert r.status_code == 422 and r.json()["detail"].startswith("body.request_id: signature does not match")
    expired = {**body, "request_id": issue_request_id(SECRET, "control", "general", time.time() - DAY - 60)}
    r = _post(fb_client, expired)
    assert r.status_code == 422 and r.json()["detail"].startswith("body.request_id: expired")
    assert _counts(fb_client, "control", "general") == (0.0, 0.0)
    assert _counts(fb_client, "treatment", "general") == (0.0, 0.0)


@pytest.mark.parametrize(
    ("offset", "status"),
    [(-290.0, 202), (290.0, 202), (-400.0, 422), (400.0, 422)],
    ids=["just-before-issue-within-skew", "ahead-within-skew", "before-issue", "future"],
)
def test_event_timestamps_are_bounded_by_issue_time_now_and_skew(
    fb_client: TestClient, offset: float, status: int
) -> None:
    body = _ok_body(fb_client)
    issued = _claims(body["request_id"]).issued
    # "before" offsets count from the issue second, "ahead" ones from now (the default skew is 300 s)
    body["events"][0]["timestamp"] = (issued if offset < 0 else time.time()) + offset
    r = _post(fb_client, body)
    assert r.status_code == status, r.text
    if status == 422:
        assert r.json()["detail"].startswith("body.events.0.timestamp")
        assert set(r.json()["allowed"]["timestamp"]) == {"ge", "le"}
        assert _counts(fb_client, "control", "general") == (0.0, 0.0)


def test_events_older_than_the_max_age_are_422(
    index_root: Path, client_for: Callable[..., TestClient]
) -> None:
    client = client_for(
        make_settings(index_root, ingest_token=TOKEN, feedback_secret=SECRET, feedback_max_age_s=60.0,
                      feedback_max_skew_s=3600.0)
    )  # fmt: skip
    body = _ok_body(client)
    # within the skew of the issue time, but past the 60 s maximum age
    body["events"][0]["timestamp"] = time.time() - 120
    r = _post(client, body)
    assert r.status_code == 422 and "feedback_max_age_s" in r.json()["detail"]


def test_openapi_documents_the_bearer_scheme_and_the_request_id(fb_client: TestClient) -> None:
    schema = fb_client.get("/openapi.json").json()
    assert schema["components"]["securitySchemes"]["ingest_token"] == {
        "type": "http", "scheme": "bearer", "description": "The service's ingest_token setting.",
    }  # fmt: skip
    post = schema["paths"]["/feedback"]["post"]
    assert post["security"] == [{"ingest_token": []}]
    assert {"202", "401", "403", "413", "422"} <= set(post["responses"])
    for name in ("I2IResponse", "BatchResponse", "U2IResponse"):
        assert "request_id" in schema["components"]["schemas"][name]["required"]


def test_a_body_that_is_not_json_is_422(fb_client: TestClient) -> None:
    r = fb_client.post(
        "/feedback", content=b"impression", headers={**AUTH, "Content-Type": "application/json"}
    )
    assert r.status_code == 422 and "JSON decode error" in r.json()["detail"]
