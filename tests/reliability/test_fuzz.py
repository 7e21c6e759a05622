"""Fuzzing: schemathesis generates requests from the service's own OpenAPI
schema (``/openapi.json``) for every route, valid ones and schema-violating ones, with random user and
variant headers, and checks each answer: never a 5xx, status code, content type, headers and body as
the schema documents them, and schema-violating input refused with a 4xx.

Every generated case is also sent to a service that has no index loaded yet (503 where documented,
never anything else in the 5xx range), and the admin route is called with the right token, none, a
wrong one, and on a service without a configured token (200 / 403 / 403 / 404).

``positive_data_acceptance`` (schema-valid input must be accepted) runs on the operations whose schema
states every rule (``GET /i2i/{item_id}``, whose ``k`` maximum, headers and int64 bounds the document
now carries, and the parameterless ones), each case sent with the headers the schema generated only.
It cannot run on GET /u2i and POST /events ("recent_items or the user header", timestamps within the
TTL of now) nor on POST /i2i:batch (triggers x k bounded by max_batch_candidates): the service rightly
answers 422 to some schema-valid requests there (documented). POST /events is sent with the ingest
token.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.python.asgi import shutdown_lifespans
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    positive_data_acceptance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from app.main import create_app
from tests.app.conftest import INGEST, make_settings
from tests.reliability.scenarios import ADMIN, ADMIN_TOKEN, ITEM_IDS

pytestmark = pytest.mark.slow

CONFORMANCE = [
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]
CHECKS = [not_a_server_error, *CONFORMANCE]

#: generated cases per operation (parameterless operations have a single distinct case)
POSITIVE = {"GET /i2i/{item_id}": 150, "POST /i2i:batch": 120, "GET /u2i": 120, "POST /events": 120}
NEGATIVE = {"GET /i2i/{item_id}": 80, "POST /i2i:batch": 80, "GET /u2i": 60, "POST /events": 80}
OTHER_EXAMPLES = 10
ADMIN_OP = "POST /admin/reload"
#: operations whose schema states every rule of a valid request (see the module docstring)
ACCEPTANCE = {"GET /i2i/{item_id}", "GET /healthz", "GET /readyz", "GET /metrics"}

# latin-1 printable text (what HTTP headers carry), up to past the 256-character user id limit
header_text = st.text(st.characters(min_codepoint=0x21, max_codepoint=0xFF, exclude_characters="\x7f\x85\xa0"),
                      min_size=1, max_size=300)  # fmt: skip
users = st.one_of(st.none(), header_text, st.sampled_from(["u1", "u2", "u3"]))
# mostly none or the declared variant, so that most valid cases get past variant assignment
variants = st.one_of(st.none(), st.none(), st.just("control"), header_text, st.just("../../etc"))
# random int64 triggers are nearly all unknown (404): half the valid i2i cases use an indexed item
known_items = st.one_of(st.none(), st.sampled_from([int(i) for i in ITEM_IDS]))


class Apps:
    """The services under test: ``main`` (index loaded, admin token set), ``no_token`` (admin routes
    off) and ``not_ready`` (empty index root)."""

    def __init__(self, index_root: Path, empty_root: Path) -> None:
        self.main = create_app(make_settings(index_root, admin_token=ADMIN_TOKEN))
        self.no_token = create_app(make_settings(index_root, admin_token=None))
        self.not_ready = create_app(make_settings(empty_root, admin_token=ADMIN_TOKEN))


@pytest.fixture(scope="module")
def apps(base_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Apps]:
    yield Apps(base_root, tmp_path_factory.mktemp("empty-root"))
    shutdown_lifespans()  # schemathesis keeps every app's lifespan running until asked


def _headers(user: str | None, variant: str | None) -> dict[str, str]:
    out = {}
    if user is not None:
        out["X-User-Id"] = user
    if variant is not None:
        out["X-Variant"] = variant
    return out


def _send(case: Any, app: FastAPI, headers: dict[str, str], checks: list[Any]) -> int:
    response = case.call(app=app, headers=headers)
    case.validate_response(response, checks=checks, headers=headers, transport_kwargs={"app": app})
    return int(response.status_code)


def fuzz_operation(
    op: Any,
    mode: GenerationMode,
    budget: int,
    apps: Apps,
    sent: Counter[str],
    statuses: Counter[tuple[str, int]],
) -> None:
    """Up to ``budget`` generated cases of ``op`` in ``mode``, each sent and checked as the module says."""

    @settings(max_examples=budget, deadline=None, database=None, derandomize=True,
              phases=[Phase.explicit, Phase.generate, Phase.shrink],
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(case=op.as_strategy(generation_mode=mode), user=users, variant=variants, item=known_items)
    def run(case: Any, user: str | None, variant: str | None, item: int | None) -> None:
        # the headers the schema now documents (user, variant) keep their generated values: replacing a
        # schema-violating one would make the negative check judge a request that was not sent
        generated = {name.lower() for name in (case.headers or {})}
        headers = {k: v for k, v in _headers(user, variant).items() if k.lower() not in generated}
        if op.label == "POST /events":
            headers.update(INGEST)
        if item is not None and mode is GenerationMode.POSITIVE and op.label == "GET /i2i/{item_id}":
            case.path_parameters["item_id"] = item
        if op.label == ADMIN_OP:
            assert _send(case, apps.main, ADMIN, CHECKS) == 200
            assert _send(case, apps.main, {}, CHECKS) == 403
            assert _send(case, apps.main, {"Authorization": "Bearer wrong"}, CHECKS) == 403
            assert _send(case, apps.no_token, ADMIN, CHECKS) == 404
            sent[op.label] += 4
            return
        if mode is GenerationMode.POSITIVE and op.label in ACCEPTANCE:
            _send(case, apps.main, {}, [not_a_server_error, positive_data_acceptance])
            sent[op.label] += 1
        status = _send(case, apps.main, headers, CHECKS)
        statuses[(op.label, status)] += 1
        sent[op.label] += 1
        if mode is GenerationMode.POSITIVE:
            # nothing loaded: 503 is documented there, any other 5xx is a failure
            late = _send(case, apps.not_ready, headers, CONFORMANCE)
            assert late < 500 or late == 503, f"{op.label}: {late} while not ready"
            sent[op.label] += 1

    run()


def test_schema_fuzzing_finds_no_5xx_and_every_answer_conforms(apps: Apps) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", apps.main)
    sent: Counter[str] = Counter()
    statuses: Counter[tuple[str, int]] = Counter()
    operations = [result.ok() for result in schema.get_all_operations()]
    labels = {op.label for op in operations}
    assert set(POSITIVE) | {ADMIN_OP, "GET /metrics", "GET /readyz", "GET /healthz"} <= labels

    for op in operations:
        fuzz_operation(
            op, GenerationMode.POSITIVE, POSITIVE.get(op.label, OTHER_EXAMPLES), apps, sent, statuses
        )
        if op.label in NEGATIVE:  # parameterless operations have no schema-violating input
            fuzz_operation(op, GenerationMode.NEGATIVE, NEGATIVE[op.label], apps, sent, statuses)

    total = sum(sent.values())
    assert total >= 1000, f"only {total} requests: {dict(sent)}"
    assert all(sent[label] >= 1 for label in labels), dict(sent)
    # the fuzzer reached the answers, not only the validation errors
    for label in ("GET /i2i/{item_id}", "POST /i2i:batch", "GET /u2i", "POST /events"):
        ok = sum(n for (name, status), n in statuses.items() if name == label and status < 300)
        assert ok > 0, f"{label}: no successful answer among {statuses}"
