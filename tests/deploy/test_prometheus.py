"""deploy/prometheus: configs and rules pass promtool, and the rules' unit tests (synthetic series,
hand-computed values in deploy/prometheus/tests/*_test.yml: alerts, index age, feedback CTR) pass."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.deploy.conftest import DEPLOY, load_yaml_docs, require_binary, run

PROM = DEPLOY / "prometheus"
RULES = sorted((PROM / "rules").glob("*.yml"))

#: the metric names the service exports (app/metrics.py): the rules may use nothing else
SERVICE_METRICS = {
    "m2grl_request_latency_seconds_bucket",
    "m2grl_requests_total",
    "m2grl_errors_total",
    "m2grl_candidates_returned_total",
    "m2grl_candidates_per_request_bucket",
    "m2grl_candidates_filtered_total",
    "m2grl_index_items",
    "m2grl_index_info",
    "m2grl_index_build_timestamp_seconds",
    "m2grl_index_reloads_total",
    "m2grl_recent_store_errors_total",
    "m2grl_feedback_impressions_total",
    "m2grl_feedback_clicks_total",
}


@pytest.mark.parametrize("config", ["prometheus.yml", "prometheus-k8s.yml"])
def test_promtool_check_config(config: str) -> None:
    result = run([require_binary("promtool"), "check", "config", str(PROM / config)])
    assert result.returncode == 0, result.stdout + result.stderr
    # the relative rule_files glob found both rule files
    assert "2 rule files found" in result.stdout


def test_promtool_check_rules() -> None:
    result = run([require_binary("promtool"), "check", "rules", *map(str, RULES)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_rejects_a_broken_rule(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    recording = PROM / "rules" / "m2grl-recording.yml"
    bad.write_text(
        recording.read_text().replace("sum by (le, mode, variant)", "sum by (le, mode, variant", 1)
    )
    result = run([require_binary("promtool"), "check", "rules", str(bad)])
    assert result.returncode != 0


@pytest.mark.slow
def test_promtool_unit_tests_of_the_alerts() -> None:
    tests = sorted((PROM / "tests").glob("*_test.yml"))
    assert len(tests) == 3
    result = run([require_binary("promtool"), "test", "rules", *map(str, tests)], timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def rules() -> list[dict]:
    return [
        rule
        for path in RULES
        for doc in load_yaml_docs(path)
        for group in doc["groups"]
        for rule in group["rules"]
    ]


def test_recording_rules_cover_p50_p95_p99_by_mode_and_variant() -> None:
    records = {r["record"]: r["expr"] for r in rules() if "record" in r}
    for q in ("50", "95", "99"):
        expr = records[f"mode_variant:m2grl_request_latency_seconds:p{q}_5m"]
        assert f"histogram_quantile(0.{q}" in expr
        assert "sum by (le, mode, variant)" in expr


def test_recording_rules_give_impressions_clicks_and_ctr_per_variant() -> None:
    records = {r["record"]: r["expr"] for r in rules() if "record" in r}
    assert (
        "sum by (variant) (increase(m2grl_feedback_impressions_total[1h]))"
        in records["variant:m2grl_feedback_impressions:increase1h"]
    )
    assert (
        "sum by (variant) (increase(m2grl_feedback_clicks_total[1h]))"
        in records["variant:m2grl_feedback_clicks:increase1h"]
    )
    ctr = records["variant:m2grl_feedback_ctr:ratio_1h"]
    assert ctr.startswith("variant:m2grl_feedback_clicks:increase1h /") and "increase1h > 0" in ctr
    assert not any("m2grl_feedback" in r["expr"] for r in rules() if "alert" in r)


def test_alerts_cover_latency_errors_index_age_and_reloads() -> None:
    alerts = {r["alert"]: r for r in rules() if "alert" in r}
    assert "> 0.005" in alerts["M2GRLLatencyP99High"]["expr"]  # 5 ms target
    assert "error_ratio" in alerts["M2GRLErrorRateHigh"]["expr"]
    assert "2 * 86400" in alerts["M2GRLIndexStale"]["expr"]
    assert 'result="failure"' in alerts["M2GRLIndexReloadFailed"]["expr"]
    for alert in alerts.values():
        assert alert["labels"]["severity"] in {"page", "ticket"}
        assert alert["annotations"]["summary"] and alert["annotations"]["description"]


def test_rules_reference_only_exported_metrics_or_recorded_series() -> None:
    import re

    recorded = {r["record"] for r in rules() if "record" in r}
    for rule in rules():
        for name in re.findall(r"\b(m2grl_[a-z_]+|[a-z_]+:m2grl_[a-z_]+:[a-z0-9_]+)\b", rule["expr"]):
            assert name in SERVICE_METRICS or name in recorded, (
                f"{rule.get('record') or rule['alert']}: {name}"
            )


def test_alert_unit_tests_catch_a_wrong_threshold(tmp_path: Path) -> None:
    """The unit tests are not vacuous: a p99 target of 10 ms instead of 5 ms makes them fail."""
    import shutil

    shutil.copytree(PROM / "rules", tmp_path / "rules")
    shutil.copytree(PROM / "tests", tmp_path / "tests")
    alerts = tmp_path / "rules" / "m2grl-alerts.yml"
    alerts.write_text(alerts.read_text().replace("p99_5m > 0.005", "p99_5m > 0.01"))
    result = run([require_binary("promtool"), "test", "rules", str(tmp_path / "tests" / "alerts_test.yml")])
    assert result.returncode != 0
    assert "M2GRLLatencyP99High" in result.stdout + result.stderr
