"""Dependency failure: the Redis recent store stopped and killed under load.

``tests/app/test_e2e.py::test_redis_store_degrades_and_recovers`` covers a SIGSTOP between sequential
requests. Added here: the same under concurrent load, with the latency of every answer while Redis
hangs (SIGSTOP) or is gone (SIGKILL), Redis restarted empty on the same port, the degradation counted
in ``m2grl_recent_store_errors_total`` only while Redis is away, and recovery both times.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from tests.reliability.scenarios import RedisProcess, redis_outage

pytestmark = [pytest.mark.slow, pytest.mark.redis]

#: latency budget of an answer while Redis is away: the per-call Redis budget (redis_timeout_s = 50 ms)
#: plus the service's own time on a shared 2-core machine
P99_BUDGET_S = 0.25
MAX_BUDGET_S = 1.0


def test_redis_stopped_then_killed_under_load(
    index_root: Path, redis_process: RedisProcess, tmp_path: Path
) -> None:
    phases = {p.name: p for p in redis_outage(index_root, redis_process, log_path=tmp_path / "service.log")}

    for p in phases.values():
        assert p.requests > 100, p
        assert not p.failures, f"{p.name}: {len(p.failures)} failed, first: {p.failures[:3]}"
        assert p.p99_s < P99_BUDGET_S and p.max_s < MAX_BUDGET_S, p
    # healthy: Redis answers, exclusions use the recent categories, nothing counted
    for name in ("healthy", "resumed", "restarted"):
        assert phases[name].recent_used == 1.0, phases[name]
    assert phases["healthy"].store_errors == 0 and phases["healthy"].events_refused == 0
    # away: answers go on without the recent categories, and the degradation is counted
    for name in ("stopped", "killed"):
        assert phases[name].recent_used == 0.0 or math.isnan(phases[name].recent_used), phases[name]
        assert phases[name].store_errors > 0 and phases[name].events_refused > 0, phases[name]
