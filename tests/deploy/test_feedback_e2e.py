"""End to end, the A/B readout: a real service (uvicorn, 2 workers in multiprocess metrics mode, two
variants at 50/50, a feedback secret and an ingest token) scraped every second by a real Prometheus
with deploy/prometheus's rules; synthetic users request candidates, post impressions and clicks with a
planted CTR per variant (5 % control, 10 % treatment), and the readout, as a library call and as
``m2grl ab report``, must name the treatment and cover the planted 5-point lift with its 95 % interval."""

from __future__ import annotations

import random
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from app.readout import readout_from_prometheus
from cli.main import app as cli
from tests.deploy.conftest import build_tiny_index, http_ok, require_binary, stop, wait_until
from tests.deploy.test_e2e import prometheus_config, promql, start, tail
from tests.net import free_port

pytestmark = pytest.mark.slow

SECRET = "e2e-feedback-secret-0123456789"
TOKEN = "e2e-ingest-token"
PLANTED = {"control": 0.05, "treatment": 0.10}
LIFT = PLANTED["treatment"] - PLANTED["control"]
USERS = 600
K = 10
SEED = 11


@dataclass
class Stack:
    service: str
    prometheus: str
    items: list[int]
    log: Path


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    prometheus_bin = require_binary("prometheus")
    tmp = tmp_path_factory.mktemp("feedback-e2e")
    index_root, version = build_tiny_index(tmp / "artifacts")
    config = tmp / "config.yaml"
    config.write_text(yaml.safe_dump({"experiment": {"salt": "e2e-feedback", "variants": [
        {"name": "control", "weight": 0.5}, {"name": "treatment", "weight": 0.5}]}}))  # fmt: skip
    port, prom_port = free_port(), free_port()
    multiproc = tmp / "multiproc"
    multiproc.mkdir()
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp),
        "M2GRL_INDEX_ROOT": str(index_root),
        "M2GRL_CONFIG_FILE": str(config),
        "M2GRL_FEEDBACK_SECRET": SECRET,
        "M2GRL_INGEST_TOKEN": TOKEN,
        "PROMETHEUS_MULTIPROC_DIR": str(multiproc),
        "OMP_NUM_THREADS": "1",
    }
    service: subprocess.Popen[bytes] = start(
        [sys.executable, "-m", "uvicorn", "app.main:create_app", "--factory", "--host", "127.0.0.1",
         "--port", str(port), "--workers", "2", "--no-access-log"],
        env, tmp / "service.log",
    )  # fmt: skip
    prometheus = start(
        [prometheus_bin, f"--config.file={prometheus_config(tmp, f'127.0.0.1:{port}')}",
         f"--storage.tsdb.path={tmp / 'tsdb'}", f"--web.listen-address=127.0.0.1:{prom_port}"],
        None, tmp / "prometheus.log",
    )  # fmt: skip
    try:
        svc, prom = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{prom_port}"
        log = tmp / "service.log"
        wait_until(lambda: http_ok(f"{svc}/readyz"), 90, "the service's /readyz", lambda: tail(log))
        wait_until(lambda: http_ok(f"{prom}/-/ready"), 60, "Prometheus", lambda: tail(tmp / "prometheus.log"))
        # increase() needs a sample before the first event: the zero series created at start-up, seen
        # in a few scrapes (a longer series is extrapolated less, see the readout test)
        zeros = "min by (variant) (count_over_time(m2grl_feedback_impressions_total[1m])) >= 3"
        wait_until(
            lambda: len(promql(prom, zeros)) == 2, 60, "the feedback counters at 0 for both variants",
            lambda: tail(tmp / "prometheus.log"),
        )  # fmt: skip
        items = [int(i) for i in np.load(index_root / "versions" / version / "items.npy")[:50]]
        yield Stack(svc, prom, items, log)
    finally:
        stop(prometheus)
        stop(service)


@dataclass
class Tally:
    impressions: Counter[str]
    clicks: Counter[str]


@pytest.fixture(scope="module")
def tally(stack: Stack) -> Tally:
    """USERS users, each served once (the variant their id hashes to), each candidate an impression,
    clicked with the variant's planted probability; every post is checked and tallied."""
    rng = random.Random(SEED)
    impressions: Counter[str] = Counter()
    clicks: Counter[str] = Counter()
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=stack.service, timeout=10) as client:
        for u in range(USERS):
            mode = ("general", "diversity")[u % 2]
            r = client.get(f"/i2i/{stack.items[u % len(stack.items)]}", params={"mode": mode, "k": K},
                           headers={"X-User-Id": f"user-{u}"})  # fmt: skip
            assert r.status_code == 200, r.text
            answer = r.json()
            variant, rid = answer["variant"], answer["request_id"]
            assert r.headers["x-request-id"] == rid
            events: list[dict[str, object]] = []
            for c in answer["candidates"]:
                events.append({"item_id": c["item_id"], "kind": "impression"})
                if rng.random() < PLANTED[variant]:
                    events.append({"item_id": c["item_id"], "kind": "click"})
            # either worker may take the post: the shared secret verifies the other's ids
            posted = client.post("/feedback", json={"request_id": rid, "events": events}, headers=auth)
            assert posted.status_code == 202, posted.text
            n_clicks = sum(1 for e in events if e["kind"] == "click")
            assert posted.json() == {"variant": variant, "mode": mode,
                                     "impressions": len(events) - n_clicks, "clicks": n_clicks}  # fmt: skip
            impressions[variant] += len(events) - n_clicks
            clicks[variant] += n_clicks
        forged = client.post(
            "/feedback", json={"request_id": rid[:-4] + "AAAA", "events": events}, headers=auth
        )
        assert forged.status_code == 422
    # the 50/50 split is a hash of the user: both arms well represented
    assert min(impressions.values()) > 0.4 * sum(impressions.values())
    return Tally(impressions, clicks)


def _scraped(stack: Stack, tally: Tally) -> bool:
    got = {
        s["metric"]["variant"]: float(s["value"][1])
        for s in promql(stack.prometheus, "sum by (variant) (m2grl_feedback_clicks_total)")
    }
    return got == {v: float(n) for v, n in tally.clicks.items()}


def test_prometheus_holds_exactly_the_posted_counts(stack: Stack, tally: Tally) -> None:
    wait_until(
        lambda: _scraped(stack, tally), 30, "a scrape with every posted click", lambda: tail(stack.log)
    )
    by_mode = promql(stack.prometheus, "sum by (variant, mode) (m2grl_feedback_impressions_total)")
    assert {s["metric"]["mode"] for s in by_mode} == {"general", "diversity"}
    totals: Counter[str] = Counter()
    for s in by_mode:
        totals[s["metric"]["variant"]] += int(float(s["value"][1]))
    assert totals == tally.impressions


def test_readout_names_the_treatment_and_covers_the_planted_lift(stack: Stack, tally: Tally) -> None:
    wait_until(
        lambda: _scraped(stack, tally), 30, "a scrape with every posted click", lambda: tail(stack.log)
    )
    exact = readout_from_prometheus(stack.prometheus, "control", "total")
    control, treatment = exact.arms
    assert (control.impressions, control.clicks) == (tally.impressions["control"], tally.clicks["control"])
    assert (treatment.impressions, treatment.clicks) == (
        tally.impressions["treatment"],
        tally.clicks["treatment"],
    )
    assert exact.winner == "treatment" and treatment.verdict == "better" and treatment.enough
    assert treatment.low is not None and treatment.high is not None
    assert treatment.low <= LIFT <= treatment.high
    assert treatment.low > 0  # decisive: the interval excludes "no difference"
    # the default window goes through increase(), which extrapolates each series to the end of the
    # window (never before its first sample, a 0): on series seconds old that inflates the counts by up
    # to one scrape interval's worth, clicks and impressions by the same factor, so the CTR holds
    windowed = readout_from_prometheus(stack.prometheus)
    assert windowed.winner == "treatment"
    for w_arm, arm in zip(windowed.arms, exact.arms, strict=True):
        assert arm.impressions <= w_arm.impressions < 2 * arm.impressions
        assert w_arm.ctr == pytest.approx(arm.ctr, abs=1e-3)
    w_treatment = windowed.arms[1]
    assert w_treatment.low is not None and w_treatment.high is not None
    assert w_treatment.low <= LIFT <= w_treatment.high


def test_cli_report_prints_the_call(stack: Stack, tally: Tally) -> None:
    wait_until(
        lambda: _scraped(stack, tally), 30, "a scrape with every posted click", lambda: tail(stack.log)
    )
    result = CliRunner().invoke(cli, ["ab", "report", "--prometheus", stack.prometheus, "--window", "total"])
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line.split() for line in result.output.splitlines()[1:3]}
    assert rows["treatment"][1:3] == [str(tally.impressions["treatment"]), str(tally.clicks["treatment"])]
    assert rows["treatment"][-2:] == ["yes", "better"]
    assert result.output.rstrip().endswith("call: treatment has the best CTR")
    missing = CliRunner().invoke(cli, ["ab", "report", "--prometheus", stack.prometheus, "--control", "nope"])
    assert missing.exit_code == 2 and "control variant 'nope' has no feedback data" in missing.output


def test_recording_rules_give_the_ctr_per_variant(stack: Stack, tally: Tally) -> None:
    expected = {v: tally.clicks[v] / tally.impressions[v] for v in PLANTED}

    def recorded() -> bool:
        series = promql(stack.prometheus, "variant:m2grl_feedback_ctr:ratio_1h")
        got = {s["metric"]["variant"]: float(s["value"][1]) for s in series}
        # once the last post is scraped, both counters of a variant are extrapolated by one factor
        return set(got) == set(expected) and all(got[v] == pytest.approx(expected[v], rel=1e-6) for v in got)

    wait_until(
        recorded, 30, "variant:m2grl_feedback_ctr:ratio_1h at the posted CTRs", lambda: tail(stack.log)
    )
    for v in PLANTED:
        (imps,) = promql(stack.prometheus, f'variant:m2grl_feedback_impressions:increase1h{{variant="{v}"}}')
        assert tally.impressions[v] <= float(imps["value"][1]) < 2 * tally.impressions[v]  # see above
