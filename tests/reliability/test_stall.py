"""No request stalls a worker: heavy batches, slow bodies and huge headers on a real uvicorn process
(before: a body declared longer than sent held its connection 90 s with no answer, a 1 MiB header was
answered 200).

The batch test asserts a latency bound, which this repository otherwise bans from tests: the issue's
requirement is a latency property (``/healthz`` must keep answering within its probe timeout while batch
clients run), and nothing else shows it. The bound is set far from both sides of what was measured on
the 2-core CI machine: two clients looping 256 x 500 diversity batches pushed the probe's p99 to 790 ms
before (inline lookups, no bound on triggers x k); with the work bound, the lookups in a worker thread
and the start-up heap frozen for the collector, two clients looping the largest allowed batch leave it
at about 11 ms (4 clients: 13 ms). 50 ms is what the issue asks, 4x the measured value and 15x under
the old one.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from tests.app.conftest import INGEST_TOKEN
from tests.app.server import start_service
from tests.reliability.scenarios import TRIGGERS
from tests.reliability.stall import batch_stall, build_stall_root, huge_header, slow_body

pytestmark = pytest.mark.slow

HEALTHZ_P99_BOUND_S = 0.050


@pytest.fixture(scope="module")
def stall_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    base = tmp_path_factory.mktemp("stall")
    root = build_stall_root(base)
    with start_service(root, log_path=base / "service.log") as service:
        yield service.base


def test_a_batch_over_the_work_bound_is_refused_with_the_largest_k_allowed(stall_service: str) -> None:
    body = {"item_ids": list(range(1, 257)), "k": 500, "mode": "diversity"}
    r = httpx.post(f"{stall_service}/i2i:batch", json=body, timeout=30)
    assert r.status_code == 422
    assert r.json() == {
        "error": "bad_request",
        "detail": "body: 256 triggers x k 500 = 128000 candidates exceed max_batch_candidates 25600 "
        "(at most k=100 for 256 triggers)",
        "allowed": {"max_batch_candidates": 25600},
    }
    body["k"] = 100  # exactly at the bound: answered in full
    r = httpx.post(f"{stall_service}/i2i:batch", json=body, timeout=30)
    assert r.status_code == 200
    assert [len(res["candidates"]) for res in r.json()["results"]] == [100] * 256


def test_healthz_stays_fast_while_clients_loop_the_largest_batch(stall_service: str) -> None:
    report = batch_stall(stall_service, clients=2, triggers=256, k=100, duration_s=4.0)
    assert report.statuses == {200} and report.batches >= 4, report
    assert len(report.probes) >= 50
    p99 = report.quantile(0.99)
    assert p99 < HEALTHZ_P99_BOUND_S, f"/healthz p99 {1000 * p99:.1f} ms while batches run"


def test_a_body_that_never_finishes_is_answered_408_and_closed(tmp_path: Path, base_root: Path) -> None:
    settings = {"body_timeout_s": 1.0, "ingest_token": INGEST_TOKEN}
    with start_service(base_root, settings=settings, log_path=tmp_path / "log") as service:
        answer = slow_body(service.base, wait_s=10.0)
        assert answer.status == 408 and 0.9 < answer.seconds < 5.0, answer
        assert orjson.loads(answer.body) == {
            "error": "request_timeout",
            "detail": "the request body did not arrive within body_timeout_s (1 s)",
            "allowed": {"body_timeout_s": 1.0},
        }
        assert httpx.get(f"{service.base}/healthz").status_code == 200


def test_a_header_over_the_limit_is_431_not_served(tmp_path: Path, base_root: Path) -> None:
    with start_service(base_root, log_path=tmp_path / "log") as service:
        answer = huge_header(service.base, 1 << 20, wait_s=10.0)
        assert answer.status == 431
        assert orjson.loads(answer.body)["allowed"] == {"max_header_bytes": 16384}
        variant = httpx.get(f"{service.base}/i2i/{TRIGGERS[0]}", headers={"X-Variant": "v" * 60_000})
        assert variant.status_code == 431 and len(variant.content) < 300
