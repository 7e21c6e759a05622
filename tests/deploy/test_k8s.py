"""deploy/k8s: valid against the Kubernetes schemas (kubernetes-validate, offline), consistent with
each other, with the service's settings, and a daily-chain script that behaves."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from kubernetes_validate import utils as kv

from app.settings import Settings
from tests.deploy.conftest import DEPLOY, load_yaml_docs, require_binary, run

K8S = DEPLOY / "k8s"
MANIFESTS = sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
IMAGE = "m2grl-service"
#: The Dockerfile's `offline` target: the training stack the serving image leaves out.
OFFLINE_IMAGE = "m2grl-offline"


def resources() -> dict[str, dict[str, Any]]:
    """Every resource by ``Kind/name``."""
    out = {}
    for path in MANIFESTS:
        for doc in load_yaml_docs(path):
            out[f"{doc['kind']}/{doc['metadata']['name']}"] = doc
    return out


def pod_spec(kind_name: str) -> dict[str, Any]:
    doc = resources()[kind_name]
    if doc["kind"] == "CronJob":
        return doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return doc["spec"]["template"]["spec"]


@pytest.mark.parametrize("version", ["1.29.0", kv.latest_version()])
@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_manifest_is_valid_against_the_kubernetes_schema(path: Path, version: str) -> None:
    docs = load_yaml_docs(path)
    assert docs
    for doc in docs:
        # strict: unknown fields (typos such as "readinesProbe") are errors too
        kv.validate(doc, version, strict=True)


def test_schema_validation_catches_a_broken_manifest() -> None:
    deployment = resources()["Deployment/m2grl"]
    broken = {**deployment, "spec": {**deployment["spec"], "replicas": "two"}}
    with pytest.raises(kv.ValidationError):
        kv.validate(broken, kv.latest_version(), strict=True)


def test_kustomization_lists_every_manifest_once() -> None:
    (kustomization,) = load_yaml_docs(K8S / "kustomization.yaml")
    assert sorted(kustomization["resources"]) == sorted(p.name for p in MANIFESTS)
    assert [i["name"] for i in kustomization["images"]] == [IMAGE, OFFLINE_IMAGE]


def test_required_resources_exist() -> None:
    kinds = {key.split("/")[0] for key in resources()}
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "ConfigMap", "PodDisruptionBudget", "CronJob",
            "PersistentVolumeClaim"} <= kinds  # fmt: skip


def test_deployment_probes_resources_and_multiprocess_metrics() -> None:
    spec = pod_spec("Deployment/m2grl")
    (server,) = spec["containers"]
    assert server["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert server["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert server["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert {"cpu", "memory"} <= set(server["resources"]["requests"]) and "memory" in server["resources"][
        "limits"
    ]
    env = {e["name"]: e for e in server["env"]}
    multiproc = env["PROMETHEUS_MULTIPROC_DIR"]["value"]
    mounts = {m["mountPath"]: m["name"] for m in server["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    # one fresh, writable, per-pod directory: an emptyDir mounted exactly there
    assert "emptyDir" in volumes[mounts[multiproc]]
    configmap = resources()["ConfigMap/m2grl-settings"]["data"]
    assert int(configmap["M2GRL_WORKERS"]) > 1
    assert server["args"][-1] == "serve"
    # nothing seeds the production volume with the bundled research-only sample: no init container,
    # no M2GRL_SEED_SAMPLE; the first version comes from the daily chain
    assert "initContainers" not in spec
    assert "M2GRL_SEED_SAMPLE" not in env and "M2GRL_SEED_SAMPLE" not in configmap
    # the service only reads the shared volume
    data_mount = next(m for m in server["volumeMounts"] if m["mountPath"] == "/data")
    assert data_mount["readOnly"] is True
    assert configmap["M2GRL_INDEX_ROOT"].startswith("/data/")
    # the container port matches the probes' named port and the Service's target
    assert server["ports"][0]["name"] == "http" and server["ports"][0]["containerPort"] == 8000


def test_every_pod_runs_non_root_the_serve_or_the_offline_image() -> None:
    for key, image in (("Deployment/m2grl", IMAGE), ("CronJob/m2grl-daily", OFFLINE_IMAGE)):
        spec = pod_spec(key)
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["runAsUser"] == 10001  # the Dockerfile's user
        for container in spec.get("initContainers", []) + spec["containers"]:
            assert container["image"].split(":")[0] == image, key
            assert container["securityContext"]["allowPrivilegeEscalation"] is False


def test_selectors_match_the_pod_template() -> None:
    res = resources()
    labels = res["Deployment/m2grl"]["spec"]["template"]["metadata"]["labels"]
    for key in ("Service/m2grl", "Service/m2grl-metrics"):
        assert res[key]["spec"]["selector"].items() <= labels.items(), key
    assert res["PodDisruptionBudget/m2grl"]["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert res["Deployment/m2grl"]["spec"]["selector"]["matchLabels"].items() <= labels.items()
    target = res["HorizontalPodAutoscaler/m2grl"]["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", "m2grl")
    hpa = res["HorizontalPodAutoscaler/m2grl"]["spec"]
    assert hpa["minReplicas"] > res["PodDisruptionBudget/m2grl"]["spec"]["minAvailable"]


def test_tokens_and_the_feedback_secret_come_from_optional_secrets() -> None:
    """Never a literal in the manifests; the same Secret on every pod, so request ids verify anywhere."""
    (server,) = pod_spec("Deployment/m2grl")["containers"]
    env = {e["name"]: e for e in server["env"]}
    wanted = {
        "M2GRL_ADMIN_TOKEN": ("m2grl-admin", "token"),
        "M2GRL_FEEDBACK_SECRET": ("m2grl-feedback", "secret"),
        "M2GRL_INGEST_TOKEN": ("m2grl-feedback", "ingest-token"),
    }
    for name, (secret, key) in wanted.items():
        ref = env[name]["valueFrom"]["secretKeyRef"]
        assert "value" not in env[name]
        assert (ref["name"], ref["key"], ref["optional"]) == (secret, key, True), name


def test_cronjob_and_deployment_share_the_claim() -> None:
    claim = "m2grl-data"
    assert resources()[f"PersistentVolumeClaim/{claim}"]["spec"]["accessModes"] == ["ReadWriteMany"]
    for key in ("Deployment/m2grl", "CronJob/m2grl-daily"):
        claims = [
            v["persistentVolumeClaim"]["claimName"]
            for v in pod_spec(key)["volumes"]
            if "persistentVolumeClaim" in v
        ]
        assert claims == [claim], key
    cron = resources()["CronJob/m2grl-daily"]["spec"]
    assert cron["concurrencyPolicy"] == "Forbid"  # two chains must never publish at once


def configmap_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, data: dict[str, str]) -> Settings:
    for key in [k for k in os.environ if k.startswith("M2GRL_")]:
        monkeypatch.delenv(key)
    config = tmp_path / "config.yaml"
    config.write_text(data["config.yaml"], encoding="utf-8")
    for key, value in data.items():
        if key.startswith("M2GRL_"):
            monkeypatch.setenv(key, value)
    monkeypatch.setenv("M2GRL_CONFIG_FILE", str(config))  # where the Deployment mounts it
    return Settings()  # type: ignore[call-arg]


def test_configmap_is_accepted_by_the_service_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = resources()["ConfigMap/m2grl-settings"]["data"]
    assert data["M2GRL_CONFIG_FILE"] == "/etc/m2grl/config.yaml"
    settings = configmap_settings(tmp_path, monkeypatch, data)
    assert settings.index_root == Path(data["M2GRL_INDEX_ROOT"])
    assert settings.variant_names == ["control", "filter"]
    assert {v.strategy for v in settings.experiment.variants} == {"metric", "filter"}
    assert sum(v.weight for v in settings.experiment.variants) == pytest.approx(1.0)
    assert settings.reload_poll_s == float(data["M2GRL_RELOAD_POLL_S"])


def test_a_bad_variant_in_the_configmap_would_stop_the_service(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = dict(resources()["ConfigMap/m2grl-settings"]["data"])
    data["config.yaml"] = data["config.yaml"].replace("strategy: filter", "strategy: random")
    with pytest.raises(ValueError, match="strategy"):
        configmap_settings(tmp_path, monkeypatch, data)


# ---------------------------------------------------------------- the daily chain script


def chain_script() -> tuple[str, dict[str, str]]:
    (container,) = pod_spec("CronJob/m2grl-daily")["containers"]
    assert container["command"] == ["bash", "-c"]
    env = {e["name"]: e["value"] for e in container["env"]}
    return container["args"][0], env


def test_daily_chain_passes_shellcheck(tmp_path: Path) -> None:
    script, _ = chain_script()
    path = tmp_path / "chain.sh"
    path.write_text(script, encoding="utf-8")
    result = run([require_binary("shellcheck"), "--shell=bash", str(path)])
    assert result.returncode == 0, result.stdout


def run_chain(
    tmp_path: Path, fail_at: str | None = None, day: str = "20240105"
) -> tuple[int, list[str], Path]:
    """Run the CronJob's script with a fake ``m2grl`` that logs its calls, creates its outputs and
    publishes on build-index; ``fail_at`` makes that subcommand exit 1."""
    script, env = chain_script()
    bin_dir, log, root = tmp_path / "bin", tmp_path / "calls.log", tmp_path / "data"
    bin_dir.mkdir(exist_ok=True)
    fake = bin_dir / "m2grl"
    fake.write_text(
        "#!/usr/bin/env bash\n"
        f'echo "$*" >> "{log}"\n'
        f'[ "$1" = "{fail_at}" ] && exit 1\n'
        'prev=""; for a in "$@"; do [ "$prev" = --output ] && mkdir -p "$a"; prev=$a; done\n'
        'if [ "$1" = tune ]; then echo m2grl=0.5,cooc=0.5,popular=0.5 > "$6/best_mix.txt"; fi\n'
        'if [ "$1" = build-index ]; then mkdir -p "$7/versions/v-$RUN_DATE"; echo "v-$RUN_DATE" > "$7/CURRENT"; fi\n',
        encoding="utf-8",
    )
    fake.chmod(0o755)
    run_env = {
        **os.environ,
        **env,
        "DATA_ROOT": str(root),
        "RUN_DATE": day,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
    }
    result = run([shutil.which("bash") or "/bin/bash", "-c", script], env=run_env)
    calls = log.read_text().splitlines() if log.exists() else []
    log.unlink(missing_ok=True)
    return result.returncode, calls, root


def test_daily_chain_runs_every_stage_in_order_and_publishes(tmp_path: Path) -> None:
    code, calls, root = run_chain(tmp_path)
    assert code == 0
    assert [c.split()[0] for c in calls] == [
        "prepare", "train", "train-metric", "tune", "evaluate", "build-index",
    ]  # fmt: skip
    assert f"--output {root}/dataset/20240105" in calls[0] and "--source taobao" in calls[0]
    assert "--memory-limit 10GB" in calls[0]
    assert f"--dataset {root}/dataset/20240105 --output {root}/model/20240105" in calls[1]
    assert calls[3] == f"tune --mix-only --dataset {root}/dataset/20240105 --output {root}/mix/20240105"
    # the report scores, and the index serves, the mix chosen on the validation split
    assert calls[4].endswith("--served control:m2grl=0.5,cooc=0.5,popular=0.5")
    assert (
        f"--model {root}/model/20240105 --metric {root}/metric/20240105 --index-root {root}/index" in calls[5]
    )
    assert calls[5].endswith(f"--default-mix {root}/mix/20240105/best_mix.txt")
    assert (root / "index" / "CURRENT").read_text().strip() == "v-20240105"


def test_daily_chain_warm_starts_from_the_newest_earlier_model(tmp_path: Path) -> None:
    _, calls, root = run_chain(tmp_path, day="20240105")
    assert "--init-from" not in calls[1]  # the first day trains from scratch
    _, calls, root = run_chain(tmp_path, day="20240107")
    assert calls[1].endswith(f"--overwrite --init-from {root}/model/20240105")
    _, calls, root = run_chain(tmp_path, day="20240107")  # a rerun of the day skips its own folder
    assert calls[1].endswith(f"--init-from {root}/model/20240105")


def test_daily_chain_failure_keeps_the_served_version(tmp_path: Path) -> None:
    assert run_chain(tmp_path, day="20240105")[0] == 0
    code, calls, root = run_chain(tmp_path, fail_at="train", day="20240106")
    assert code != 0
    assert [c.split()[0] for c in calls] == ["prepare", "train"]
    assert (root / "index" / "CURRENT").read_text().strip() == "v-20240105"


def test_daily_chain_keeps_only_the_last_days(tmp_path: Path) -> None:
    _, env = chain_script()
    keep = int(env["KEEP_DAYS"])
    days = [f"202401{d:02d}" for d in range(1, keep + 3)]
    for day in days:
        assert run_chain(tmp_path, day=day)[0] == 0
    for stage in ("dataset", "model", "metric", "mix", "report"):
        assert sorted(p.name for p in (tmp_path / "data" / stage).iterdir()) == days[-keep:], stage
    # index versions are pruned by build-index itself (--retention), not by the script
    assert (tmp_path / "data" / "index" / "CURRENT").read_text().strip() == f"v-{days[-1]}"
