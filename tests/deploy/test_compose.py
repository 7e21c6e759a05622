"""deploy/docker-compose.yml: service, Prometheus and Grafana wired to the files in this repository
(no Docker engine here, so the file is checked, not run)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from app.settings import Settings
from tests.deploy.conftest import DEPLOY, REPO, load_yaml_docs

COMPOSE = DEPLOY / "docker-compose.yml"


def compose() -> dict:
    (doc,) = load_yaml_docs(COMPOSE)
    return doc


def test_services_and_build() -> None:
    services = compose()["services"]
    assert {"m2grl", "prometheus", "grafana"} <= set(services)
    build = services["m2grl"]["build"]
    assert (DEPLOY / build["context"] / build["dockerfile"]).resolve() == REPO / "Dockerfile"
    # the local stack serves the bundled sample: the opt-in demo target, tagged apart from production
    assert build["target"] == "demo" and services["m2grl"]["image"].endswith("-demo")
    assert f"AS {build['target']}" in (REPO / "Dockerfile").read_text()


def test_every_bind_mount_exists() -> None:
    for name, service in compose()["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name}: {source}"


def test_ports_are_published_on_loopback_only() -> None:
    for name, service in compose()["services"].items():
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name}: {port}"


def test_prometheus_scrapes_the_service_by_its_compose_name() -> None:
    (config,) = load_yaml_docs(DEPLOY / "prometheus" / "prometheus.yml")
    (job,) = config["scrape_configs"]
    assert job["static_configs"][0]["targets"] == ["m2grl:8000"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in compose()["services"]["prometheus"]["command"]


def test_compose_settings_file_is_accepted_by_the_service(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = compose()["services"]["m2grl"]
    for key in [k for k in os.environ if k.startswith("M2GRL_")]:
        monkeypatch.delenv(key)
    for key, value in service["environment"].items():
        monkeypatch.setenv(key, value)
    mount = next(v for v in service["volumes"] if v.endswith(":/etc/m2grl/config.yaml:ro"))
    monkeypatch.setenv("M2GRL_CONFIG_FILE", str(DEPLOY / mount.split(":")[0]))
    monkeypatch.setenv("M2GRL_INDEX_ROOT", "/data/index")  # the image's default
    settings = Settings()  # type: ignore[call-arg]
    assert settings.recent_store == "redis" and "redis" in compose()["services"]
    assert settings.variant_names == ["control", "filter"]
