"""Hot swap under load: a real uvicorn process answers a few hundred
requests per second while a new index version is published every 2 seconds (``index.publish.publish``,
the function ``m2grl build-index`` ends with), some swaps also forced through ``POST /admin/reload``.

No request may fail, and every answer must be wholly one version's: the ``X-Index-Version`` header is
the body's ``index_version``, and the candidates are that version's known answer for the trigger (the
versions differ, so an answer mixing two would not match either). ``benchmarks/reliability.py`` runs
the same scenario for 30 seconds.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.reliability.scenarios import BASES, hot_swap, known_answers

pytestmark = pytest.mark.slow


def test_versions_swap_under_load_without_a_failed_or_mixed_answer(index_root: Path, tmp_path: Path) -> None:
    answers = [known_answers(index_root, b) for b in BASES]
    assert all(a != b for i, a in enumerate(answers) for b in answers[i + 1 :])  # versions tell apart

    report = hot_swap(index_root, duration_s=12.0, rate=250.0, log_path=tmp_path / "service.log")

    failures = report.failures
    assert not failures, f"{len(failures)} of {len(report.answers)} failed, first: {failures[:3]}"
    assert len(report.answers) >= 0.95 * 12 * 250
    assert len(report.swaps) >= 4
    # every published version was served, each loaded once (poller and forced reloads never race)
    assert set(report.swaps) <= report.served
    assert report.reloads_ok == 1 + len(report.swaps) and report.reloads_failed == 0
