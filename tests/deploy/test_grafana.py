"""deploy/grafana: the dashboard JSON and its provisioning are consistent (the queries themselves
are evaluated against a real Prometheus in test_e2e.py)."""

from __future__ import annotations

import json
import re
from typing import Any

from tests.deploy.conftest import DEPLOY, load_yaml_docs
from tests.deploy.test_prometheus import SERVICE_METRICS, rules

GRAFANA = DEPLOY / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "m2grl.json"


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def query_panels() -> list[dict[str, Any]]:
    return [p for p in dashboard()["panels"] if p["type"] != "row"]


def test_panel_ids_unique_and_layout_does_not_overlap() -> None:
    panels = dashboard()["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for p in panels:
        g = p["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24, p["title"]
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not mine & cells, f"{p['title']} overlaps another panel"
        cells |= mine


def test_dashboard_covers_the_issue() -> None:
    exprs = " ".join(t["expr"] for p in query_panels() for t in p["targets"])
    for needle in (
        "p50_5m", "p95_5m", "p99_5m",  # latency quantiles by mode and variant
        "m2grl_requests", "error_ratio", "m2grl_errors_total",  # request and error rates
        "m2grl_candidates_per_request_bucket",  # candidates per request
        "m2grl_index_info", "m2grl_index_build_timestamp_seconds",  # index version and age
        "m2grl_feedback_ctr:ratio_1h", "m2grl_feedback_impressions:increase1h",  # A/B feedback
    ):  # fmt: skip
        assert needle in exprs, needle
    names = {v["name"] for v in dashboard()["templating"]["list"]}
    assert {"datasource", "mode", "variant"} <= names


def test_ctr_panel_draws_each_variant_with_its_wald_interval() -> None:
    (panel,) = [p for p in query_panels() if "ctr:ratio_1h" in " ".join(t["expr"] for t in p["targets"])]
    exprs = [t["expr"] for t in panel["targets"]]
    ctr = 'variant:m2grl_feedback_ctr:ratio_1h{variant=~"$variant"}'
    half = (
        f"1.96 * sqrt({ctr} * (1 - {ctr}) / "
        'variant:m2grl_feedback_impressions:increase1h{variant=~"$variant"})'
    )
    assert exprs == [ctr, f"{ctr} - {half}", f"{ctr} + {half}"]
    assert [t["legendFormat"] for t in panel["targets"]] == [
        "{{variant}} CTR", "{{variant}} 95% low", "{{variant}} 95% high",
    ]  # fmt: skip
    assert panel["fieldConfig"]["defaults"]["unit"] == "percentunit"


def test_every_panel_uses_the_provisioned_datasource() -> None:
    (provisioning,) = load_yaml_docs(GRAFANA / "provisioning" / "datasources" / "prometheus.yaml")
    (source,) = provisioning["datasources"]
    ds_var = next(v for v in dashboard()["templating"]["list"] if v["name"] == "datasource")
    assert ds_var["current"]["value"] == source["uid"]
    for panel in query_panels():
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"]


def test_queries_use_only_exported_metrics_or_recording_rules() -> None:
    recorded = {r["record"] for r in rules() if "record" in r}
    for panel in query_panels():
        for target in panel["targets"]:
            for name in re.findall(r"\b(m2grl_[a-z_]+|[a-z_]+:m2grl_[a-z_]+:[a-z0-9_]+)\b", target["expr"]):
                assert name in SERVICE_METRICS or name in recorded, f"{panel['title']}: {name}"


def test_dashboard_provider_points_where_compose_mounts_the_json() -> None:
    (provider_file,) = load_yaml_docs(GRAFANA / "provisioning" / "dashboards" / "m2grl.yaml")
    path = provider_file["providers"][0]["options"]["path"]
    (compose,) = load_yaml_docs(DEPLOY / "docker-compose.yml")
    mounts = compose["services"]["grafana"]["volumes"]
    assert f"./grafana/dashboards:{path}:ro" in mounts
    assert "./grafana/provisioning:/etc/grafana/provisioning:ro" in mounts
