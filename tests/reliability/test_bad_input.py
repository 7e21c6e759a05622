"""Bad input everywhere: what the service and the jobs answer to malformed requests and files.

HTTP (``tests/app/test_routes.py`` has k=0/501, an unknown mode, bad lists, the batch size and a
Content-Length over the body limit): negative, huge and fractional k, out-of-int64 ids in queries and
bodies (which were 500s), non-finite timestamps, JSON booleans for integers, oversized user ids,
bodies that are not UTF-8 JSON, over-limit bodies without Content-Length (chunked: was a 400),
and, on a real uvicorn process, non-UTF-8 bytes, a 1 MB value in X-User-Id (431: over max_header_bytes)
and a 1,000-character one (422). Every refusal is a
4xx with the JSON error body, never a 500.

Offline adapters (``tests/offline/test_adapters.py`` has bad types, missing ids, short lines):
a file with no data row, latin-1 bytes (early and past the sniffed head), a UTF-16 file, binary
garbage and a broken gzip: counted and reported, or refused with one clear line, also through
``m2grl prepare`` (nonzero exit, no traceback).
"""

from __future__ import annotations

import gzip
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from offline.data.adapters import SNIFF_BYTES, read_generic, read_movielens, read_taobao
from offline.data.config import BadInputError
from tests.app.conftest import INGEST, INGEST_TOKEN, make_settings
from tests.app.server import start_service
from tests.reliability.scenarios import ITEM_IDS, assert_clean_failure, m2grl, metric_sample

T = int(ITEM_IDS[0])
HUGE = 10**30
JSON = {"content-type": "application/json"}
AUTH = b"Authorization: Bearer " + INGEST_TOKEN.encode()

#: (method, path, JSON body or raw bytes, headers, status)
HTTP_CASES: list[tuple[str, str, Any, dict[str, Any], int]] = [
    ("GET", f"/i2i/{T}?k=-3", None, {}, 422),
    ("GET", f"/i2i/{T}?k={HUGE}", None, {}, 422),
    ("GET", f"/i2i/{T}?k=2.5", None, {}, 422),
    ("GET", f"/i2i/{T}?mode=DIVERSITY", None, {}, 422),
    ("GET", f"/i2i/{T}?mode=", None, {}, 422),
    ("GET", f"/i2i/{T}?exclude_categories={HUGE}", None, {}, 422),
    ("GET", f"/i2i/{T}?exclude_categories=-{2**63 + 1}", None, {}, 422),
    ("GET", f"/i2i/{-(2**63)}", None, {}, 404),
    ("GET", f"/i2i/{T}", None, {"X-User-Id": "u" * 300}, 422),
    ("GET", f"/i2i/{T}", None, {"X-User-Id": b"\xff\xfe\x80 user"}, 200),
    ("GET", f"/u2i?recent_items={T},{HUGE}", None, {}, 422),
    ("GET", f"/u2i?recent_items={T}&exclude_categories={HUGE}", None, {}, 422),
    ("GET", f"/u2i?recent_items={T}&k=-1", None, {}, 422),
    ("POST", "/i2i:batch", {"item_ids": [T], "k": -1}, {}, 422),
    ("POST", "/i2i:batch", {"item_ids": [T], "k": HUGE}, {}, 422),
    ("POST", "/i2i:batch", {"item_ids": [T], "k": True}, {}, 422),
    ("POST", "/i2i:batch", {"item_ids": [T], "mode": "fancy"}, {}, 422),
    ("POST", "/i2i:batch", {"item_ids": []}, {}, 422),
    ("POST", "/i2i:batch", {"item_ids": [HUGE]}, {}, 422),
    ("POST", "/i2i:batch", {"item_ids": [T], "exclude_categories": [2**63]}, {}, 422),
    ("POST", "/i2i:batch", {"item_ids": str(T)}, {}, 422),
    ("POST", "/i2i:batch", [T], {}, 422),
    (
        "POST",
        "/i2i:batch",
        b"\xff\xfe\x00garbage",
        JSON,
        422,
    ),  # a UTF-16 byte order mark: decoded, then not JSON
    ("POST", "/i2i:batch", b'{"item_ids": [1,', JSON, 422),
    ("POST", "/events", {"user_id": "u", "events": [{"item_id": 2**64}]}, {}, 422),
    ("POST", "/events", {"user_id": "u", "events": [{"item_id": T}] * 1001}, {}, 422),
    ("POST", "/events", {"user_id": "u", "events": []}, {}, 422),
    ("POST", "/events", {"user_id": "", "events": [{"item_id": T}]}, {}, 422),
    ("POST", "/events", {"user_id": "u" * 300, "events": [{"item_id": T}]}, {}, 422),
    ("POST", "/events", {"events": [{"item_id": T}]}, {"X-User-Id": "u" * 300}, 422),
    ("POST", "/events", b'{"user_id": "u", "events": [{"item_id": %d, "timestamp": NaN}]}' % T, JSON, 422),
    (
        "POST",
        "/events",
        b'{"user_id": "u", "events": [{"item_id": %d, "timestamp": -Infinity}]}' % T,
        JSON,
        422,
    ),
    ("POST", "/events", {"user_id": "u", "events": [{"item_id": T, "timestamp": "yesterday"}]}, {}, 422),
    ("POST", "/events", bytes(range(128, 256)) * 4, JSON, 400),
    ("POST", "/events", "\u00e9".encode("latin-1"), JSON, 400),
]


def _send(client: TestClient, method: str, path: str, body: Any, headers: dict[str, Any]) -> Any:
    if path == "/events":  # authenticated: what is tested is the body
        headers = {**INGEST, **headers}
    if isinstance(body, bytes):
        return client.request(method, path, content=body, headers=headers)
    return client.request(method, path, json=body, headers=headers)


def _is_error_body(r: Any) -> bool:
    body = r.json()
    return r.headers["content-type"] == "application/json" and {"error", "detail", "allowed"} <= set(body)


@pytest.fixture
def client(index_root: Path, client_for: Callable[..., TestClient]) -> TestClient:
    return client_for(make_settings(index_root))


@pytest.mark.parametrize(("method", "path", "body", "headers", "status"), HTTP_CASES)
def test_bad_requests_get_a_4xx_json_error_never_500(
    client: TestClient, method: str, path: str, body: Any, headers: dict[str, Any], status: int
) -> None:
    r = _send(client, method, path, body, headers)
    assert r.status_code == status, r.text[:300]
    if status >= 400:
        assert _is_error_body(r), r.text[:300]
    assert metric_sample(client.get("/metrics").text, "m2grl_errors_total", reason="internal") == 0


@pytest.mark.parametrize("path", ["/i2i:batch", "/events"])
@pytest.mark.parametrize("chunked", [True, False])
def test_oversized_bodies_are_413(
    index_root: Path, client_for: Callable[..., TestClient], path: str, chunked: bool
) -> None:
    client = client_for(make_settings(index_root, max_body_bytes=4096))
    payload = b'{"user_id": "u", "item_ids": [' + b",".join(b"%d" % T for _ in range(2000)) + b"]}"

    def chunks() -> Any:  # no Content-Length: the limit is enforced while reading
        for i in range(0, len(payload), 1000):
            yield payload[i : i + 1000]

    r = client.post(path, content=chunks() if chunked else payload, headers=JSON)
    assert r.status_code == 413 and _is_error_body(r) and r.json()["allowed"] == {"max_body_bytes": 4096}
    small = {"/i2i:batch": {"item_ids": [T]}, "/events": {"user_id": "u", "events": [{"item_id": T}]}}[path]
    assert client.post(path, json=small, headers=INGEST).status_code in (
        200,
        202,
    )  # under the limit: answered


def _raw(base: str, request: bytes) -> tuple[int, bytes]:
    """Send raw bytes over one connection; returns the status and the body of the answer."""
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def _get(path: str, *headers: bytes) -> bytes:
    return b"GET %s HTTP/1.1\r\nHost: x\r\n%sConnection: close\r\n\r\n" % (
        path.encode(),
        b"".join(h + b"\r\n" for h in headers),
    )


@pytest.mark.slow
def test_malformed_headers_on_a_real_server(index_root: Path, tmp_path: Path) -> None:
    settings = {"ingest_token": INGEST_TOKEN}
    with start_service(index_root, settings=settings, log_path=tmp_path / "service.log") as service:
        user = b"X-User-Id: \xff\xfe\x80caf\xe9"  # latin-1 on the wire, not UTF-8
        status, body = _raw(service.base, _get(f"/i2i/{T}?k=3&mode=diversity", user))
        assert status == 200 and b'"returned":3' in body
        events = b'{"events": [{"item_id": %d}]}' % T
        status, body = _raw(service.base, b"POST /events HTTP/1.1\r\nHost: x\r\n" + user + b"\r\n" + AUTH + b"\r\n"
                            b"Content-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
                            % len(events) + events)  # fmt: skip
        assert status == 202, body
        status, body = _raw(service.base, _get("/u2i?k=2", user))
        assert status == 200 and b'"triggers":[%d]' % T in body  # the same user, found again
        status, body = _raw(service.base, _get(f"/i2i/{T}", b"X-User-Id: " + b"u" * 1_000_000))
        assert status == 431 and b'"max_header_bytes":16384' in body  # over the head limit
        status, body = _raw(service.base, _get(f"/i2i/{T}", b"X-User-Id: " + b"u" * 1000))
        assert status == 422 and b'"max_length":256' in body
        status, body = _raw(service.base, _get(f"/i2i/{T}", b"X-Variant: \xff../../etc"))
        assert status == 422 and b"not declared" in body
        status, _ = _raw(service.base, _get(f"/i2i/{T}", b"X-User-Id: a\x00b"))
        assert status == 400  # refused by the HTTP parser itself
        status, _ = _raw(service.base, _get("/healthz"))
        assert status == 200
        status, body = _raw(service.base, _get("/metrics"))
        assert metric_sample(body.decode(), "m2grl_errors_total", reason="internal") == 0


# ------------------------------------------------------------------------------------- offline input

ROWS = "".join(f"{u},{i},{i % 3},pv,{1000 + 10 * i + u}\n" for u in range(5) for i in range(40))
MAPPING = {"user_id": "uid", "item_id": "iid", "timestamp": "ts", "category_id": "cat"}
HEADER = "uid,iid,cat,kind,ts\n"


def test_a_file_without_data_rows_is_reported_not_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_text(HEADER)
    result = read_taobao(path)  # headerless format: the header is one bad row
    assert result.table.num_rows == 0 and result.bad_rows.bad == {"wrong type": 1}
    with pytest.raises(BadInputError, match="1 of 1 input rows are bad"):
        result.bad_rows.check(0.01)
    generic = read_generic(path, MAPPING)
    assert generic.table.num_rows == 0 and generic.bad_rows.total_rows == 0


def test_malformed_movielens_rows_are_counted_with_lines(tmp_path: Path) -> None:
    (tmp_path / "ratings.csv").write_text(
        "userId,movieId,rating,timestamp\n1,10,4.0,100\n1,11,four,200\n2,10,5.0\n2,12,3.5,300,extra\n"
    )
    (tmp_path / "movies.csv").write_text("movieId,title,genres\n10,A,Comedy\n11,B,Drama\nx,C,Drama\n")
    result = read_movielens(tmp_path / "ratings.csv", tmp_path / "movies.csv")
    assert result.table.num_rows == 1
    assert result.bad_rows.bad == {"wrong number of fields": 2, "wrong type": 2}
    found = {(e["reason"], e["line"] if e["column"] else e["value"]) for e in result.bad_rows.examples}
    # a short or long row is named by its text (the threaded CSV parser does not know its line)
    assert found == {("wrong type", 3), ("wrong type", 4), ("wrong number of fields", "2,10,5.0"),
                     ("wrong number of fields", "2,12,3.5,300,extra")}  # fmt: skip


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        (
            "latin1.csv",
            (ROWS + "9,caf\xe9,1,pv,5\n").encode("latin-1"),
            r"not UTF-8 text: byte 0xe9 on line 201",
        ),
        ("late-latin1.csv", (ROWS * 70 + "9,1,1,caf\xe9,5\n").encode("latin-1"), "re-encode it as UTF-8"),
        ("utf16.csv", ROWS.encode("utf-16"), "UTF-16"),
        ("utf16.csv.gz", gzip.compress(ROWS.encode("utf-16")), "UTF-16"),
        ("garbage.csv", bytes(range(256)) * 8, "not UTF-8 text"),
        ("broken.csv.gz", b"\x1f\x8b\x08\x00garbage", "cannot be read"),
    ],
)
def test_wrong_encodings_are_refused_with_a_clear_error(
    tmp_path: Path, name: str, data: bytes, message: str
) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    if name == "late-latin1.csv":
        assert data.index(b"\xe9") > SNIFF_BYTES  # past the sniffed head: the CSV reader catches it
    for read in (read_taobao, lambda p: read_generic(p, {**MAPPING, "behavior": "kind"}, fmt="csv")):
        with pytest.raises(BadInputError, match=message) as err:
            read(path)
        assert "\n" not in str(err.value)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("data", "fragments"),
    [
        ((ROWS + "9,caf\xe9,1,pv,5\n").encode("latin-1"), ("not UTF-8 text", "line 201")),
        (ROWS.encode("utf-16"), ("UTF-16",)),
        (bytes(range(256)) * 8, ("not UTF-8 text",)),
        ((ROWS + "1,x,1,pv,5\n1,2,3\n7,8,9,pv,\n").encode(), ("3 of 203 input rows are bad",)),
    ],
)
def test_prepare_refuses_bad_files_in_one_line(
    tmp_path: Path, data: bytes, fragments: tuple[str, ...]
) -> None:
    path = tmp_path / "UserBehavior.csv"
    path.write_bytes(data)
    out = tmp_path / "dataset"
    result = m2grl("prepare", "--source", "taobao", "--input", str(path), "--output", str(out))
    assert_clean_failure(result, *fragments)
    assert not out.exists()
