"""scripts/install_system_deps.sh, container_build.sh and container_start.sh: the logic with stub
binaries (fast), then the Dockerfile's real install and start steps in a temporary virtualenv (slow)."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.deploy.conftest import (
    REPO,
    SCRIPTS,
    VENV_BIN,
    build_tiny_index,
    http_ok,
    require_binary,
    run,
    stop,
    wait_until,
)
from tests.net import free_port

BASH = shutil.which("bash") or "/bin/bash"


def stub(bin_dir: Path, name: str, body: str = "") -> Path:
    """An executable shell stub that appends its name and arguments to $STUB_LOG, then runs ``body``."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    path = bin_dir / name
    path.write_text(f'#!{BASH}\necho "{name} $*" >> "$STUB_LOG"\n{body}\n', encoding="utf-8")
    path.chmod(0o755)
    return path


def link_tools(bin_dir: Path, *names: str) -> None:
    bin_dir.mkdir(parents=True, exist_ok=True)
    for name in names:
        target = shutil.which(name)
        assert target is not None, name
        (bin_dir / name).symlink_to(target)


def log_lines(log: Path) -> list[str]:
    return log.read_text(encoding="utf-8").splitlines() if log.exists() else []


# ---------------------------------------------------------------- install_system_deps.sh


@pytest.fixture
def isolated_path(tmp_path: Path) -> tuple[Path, Path]:
    """A bin dir holding only the coreutils the script uses, and a stub log."""
    bin_dir = tmp_path / "bin"
    link_tools(bin_dir, "sort", "id")
    return bin_dir, tmp_path / "stub.log"


def run_deps(bin_dir: Path, log: Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": str(bin_dir), "STUB_LOG": str(log), "HOME": str(log.parent)}
    return run([BASH, str(SCRIPTS / "install_system_deps.sh")], env=env)


def test_system_deps_noop_when_every_binary_is_present(isolated_path: tuple[Path, Path]) -> None:
    bin_dir, log = isolated_path
    for name in ("promtool", "prometheus", "redis-server", "wrk", "chromium", "chromedriver"):
        stub(bin_dir, name)
    stub(bin_dir, "apt-get")
    result = run_deps(bin_dir, log)
    assert result.returncode == 0, result.stderr
    assert "already present" in result.stdout
    assert log_lines(log) == []  # apt-get never called


def test_system_deps_installs_only_missing_packages_once(isolated_path: tuple[Path, Path]) -> None:
    bin_dir, log = isolated_path
    stub(bin_dir, "redis-server")
    stub(bin_dir, "chromium")
    # the fake apt-get "installs" every binary of the packages it is given
    stub(
        bin_dir,
        "apt-get",
        f'for p in "$@"; do case $p in prometheus) touch "{bin_dir}/promtool" "{bin_dir}/prometheus";; '
        f'wrk) touch "{bin_dir}/wrk";; chromium-driver) touch "{bin_dir}/chromedriver";; esac; done; '
        f'chmod +x "{bin_dir}"/* 2>/dev/null || true',
    )
    link_tools(bin_dir, "touch", "chmod")
    result = run_deps(bin_dir, log)
    assert result.returncode == 0, result.stdout + result.stderr
    calls = log_lines(log)
    assert calls[0] == "apt-get update -qq"
    installed = calls[1].split()
    assert installed[:5] == ["apt-get", "install", "-y", "-qq", "--no-install-recommends"]
    # promtool and prometheus come from one package: asked for once; redis-server and chromium were
    # present, chromedriver comes from its own package
    assert sorted(installed[5:]) == ["chromium-driver", "prometheus", "wrk"]


def test_system_deps_fails_clearly_without_apt(isolated_path: tuple[Path, Path]) -> None:
    bin_dir, log = isolated_path
    result = run_deps(bin_dir, log)
    assert result.returncode != 0
    assert "prometheus" in result.stderr and ("apt-get" in result.stderr or "root" in result.stderr)


def test_system_deps_fails_when_apt_does_not_provide_the_binary(isolated_path: tuple[Path, Path]) -> None:
    bin_dir, log = isolated_path
    stub(bin_dir, "apt-get")  # succeeds but installs nothing
    result = run_deps(bin_dir, log)
    assert result.returncode == 1
    assert "still missing" in result.stderr


# ---------------------------------------------------------------- container_build.sh


def test_build_usage_errors() -> None:
    cases: list[list[str]] = [
        [], ["nope"], ["torch"], ["deps", "/tmp/v"], ["project", "/tmp/v"], ["requirements", "/tmp"],
        ["project", "/tmp/v", "/tmp/s", "gpu"], ["sample-index", "/tmp/i"],
    ]  # fmt: skip
    for args in cases:
        result = run([BASH, str(SCRIPTS / "container_build.sh"), *args])
        assert result.returncode == 2, args
        assert "container_build.sh install VENV SRC" in result.stderr


def test_build_project_refuses_a_folder_without_pyproject(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    os.symlink(sys.executable, venv / "bin" / "python")
    result = run([BASH, str(SCRIPTS / "container_build.sh"), "project", str(venv), str(tmp_path / "src")])
    assert result.returncode == 1
    assert "pyproject.toml not found" in result.stderr


def requirement_names(path: Path) -> list[str]:
    return [re.split(r"[\[<>=!~; ]", line, maxsplit=1)[0] for line in path.read_text().splitlines()]


def test_requirements_are_pyproject_dependencies_plus_the_named_extras(tmp_path: Path) -> None:
    import tomllib

    with open(REPO / "pyproject.toml", "rb") as fh:
        project = tomllib.load(fh)["project"]
    build = [BASH, str(SCRIPTS / "container_build.sh"), "requirements", str(REPO)]
    result = run([*build, str(tmp_path / "serve.txt")])
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "serve.txt").read_text().splitlines() == project["dependencies"]
    # the slim image's set: none of the training stack
    assert not set(requirement_names(tmp_path / "serve.txt")) & {"torch", "duckdb", "ibis-framework", "gensim",
                                                                 "numba", "matplotlib", "optuna", "scipy"}  # fmt: skip
    # empty names are dropped: the Dockerfile passes "offline,${EXTRAS}" with EXTRAS empty
    result = run([*build, str(tmp_path / "reqs" / "offline.txt"), "offline,,gpu"])
    assert result.returncode == 0, result.stderr
    lines = (tmp_path / "reqs" / "offline.txt").read_text().splitlines()
    optional = project["optional-dependencies"]
    assert lines == project["dependencies"] + optional["offline"] + optional["gpu"]
    result = run([*build, str(tmp_path / "x.txt"), "offline,cuda"])
    assert (
        result.returncode != 0 and "unknown extra(s) cuda; valid: dev, gpu, offline, spark" in result.stderr
    )
    assert not (tmp_path / "x.txt").exists()


def test_deps_installs_the_requirement_file_with_the_torch_index(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    stub(venv / "bin", "pip")
    os.symlink(sys.executable, venv / "bin" / "python")
    (tmp_path / "r.txt").write_text("numpy\n")
    env = {
        **os.environ,
        "STUB_LOG": str(tmp_path / "stub.log"),
        "TORCH_INDEX_URL": "https://torch.example/cpu",
    }
    result = run(
        [BASH, str(SCRIPTS / "container_build.sh"), "deps", str(venv), str(tmp_path / "r.txt")], env=env
    )
    assert result.returncode == 0, result.stderr
    assert log_lines(tmp_path / "stub.log") == [
        f"pip install --disable-pip-version-check --extra-index-url https://torch.example/cpu -r {tmp_path / 'r.txt'}"
    ]
    result = run(
        [BASH, str(SCRIPTS / "container_build.sh"), "deps", str(venv), str(tmp_path / "no.txt")], env=env
    )
    assert result.returncode == 1 and "requirement file" in result.stderr


def test_sample_index_runs_the_daily_chain_in_order(tmp_path: Path) -> None:
    bin_dir, log = tmp_path / "bin", tmp_path / "stub.log"
    # the fake build-index publishes a version the way the real one does
    stub(
        bin_dir,
        "m2grl",
        'if [ "$1" = build-index ]; then mkdir -p "$7/versions/v1"; echo v1 > "$7/CURRENT"; fi',
    )
    data = tmp_path / "data"
    (data / "movielens-small").mkdir(parents=True)
    index_root = tmp_path / "index"
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "STUB_LOG": str(log),
        "SAMPLE_EPOCHS": "1",
    }
    result = run(
        [BASH, str(SCRIPTS / "container_build.sh"), "sample-index", str(index_root), str(data)], env=env
    )
    assert result.returncode == 0, result.stderr
    steps = [line.split()[1] for line in log_lines(log)]
    assert steps == ["prepare", "train", "train-metric", "build-index"]
    prepare = log_lines(log)[0].split()
    assert prepare[prepare.index("--input") + 1] == str(data / "movielens-small")
    assert "--epochs 1" in log_lines(log)[1]
    # the intermediate dataset/model folders live in a temporary dir that is removed afterwards
    work = Path(prepare[prepare.index("--output") + 1]).parent
    assert not work.exists()


def test_sample_index_stops_at_the_first_failing_step(tmp_path: Path) -> None:
    bin_dir, log = tmp_path / "bin", tmp_path / "stub.log"
    stub(bin_dir, "m2grl", '[ "$1" = train ] && exit 3; exit 0')
    data = tmp_path / "data"
    (data / "taobao-sample").mkdir(parents=True)
    (data / "taobao-sample" / "UserBehavior_head_sample.csv.gz").write_bytes(b"")
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "STUB_LOG": str(log),
        "SAMPLE_SOURCE": "taobao",
    }
    result = run(
        [BASH, str(SCRIPTS / "container_build.sh"), "sample-index", str(tmp_path / "i"), str(data)], env=env
    )
    assert result.returncode == 3
    assert [line.split()[1] for line in log_lines(log)] == ["prepare", "train"]
    env["SAMPLE_SOURCE"] = "imdb"
    result = run(
        [BASH, str(SCRIPTS / "container_build.sh"), "sample-index", str(tmp_path / "i"), str(data)], env=env
    )
    assert result.returncode == 2 and "valid: movielens, taobao" in result.stderr


# ---------------------------------------------------------------- container_start.sh


def fake_index_root(root: Path, version: str) -> Path:
    vdir = root / "versions" / version
    (vdir / "general").mkdir(parents=True)
    (vdir / "general" / "topn_ids.npy").write_bytes(b"ids")
    (vdir / "_COMPLETE").write_text("", encoding="utf-8")
    (root / "CURRENT").write_text(version + "\n", encoding="utf-8")
    return root


def start_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    home = tmp_path / "home"
    stub(home / "scripts", "container_build.sh", 'mkdir -p "$2/versions/built"; echo built > "$2/CURRENT"')
    bin_dir = tmp_path / "bin"
    stub(bin_dir, "m2grl", 'echo "multiproc=${PROMETHEUS_MULTIPROC_DIR:-none}" >> "$STUB_LOG"')
    return {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "STUB_LOG": str(tmp_path / "stub.log"),
        "M2GRL_HOME": str(home),
        "M2GRL_INDEX_ROOT": str(tmp_path / "data" / "index"),
        "M2GRL_SAMPLE_INDEX": str(tmp_path / "bundled"),
        **extra,
    }


def test_start_never_seeds_the_sample_unless_asked(tmp_path: Path) -> None:
    """The production default: an empty volume stays empty (unready) even where a sample index is
    bundled, because the sample is research-only data."""
    fake_index_root(tmp_path / "bundled", "20240101T000000Z")
    for extra in ({}, {"M2GRL_SEED_SAMPLE": "0"}):
        env = start_env(tmp_path, **extra)
        if not extra:
            env.pop("M2GRL_SEED_SAMPLE", None)
        result = run([BASH, str(SCRIPTS / "container_start.sh"), "seed"], env=env)
        assert result.returncode == 0, result.stderr
        assert "unready until the daily chain publishes" in result.stderr
        assert not (tmp_path / "data").exists()
        assert log_lines(tmp_path / "stub.log") == []  # nothing built from the sample either


def test_start_seeds_an_empty_root_from_the_bundled_index(tmp_path: Path) -> None:
    fake_index_root(tmp_path / "bundled", "20240101T000000Z")
    env = start_env(tmp_path, M2GRL_SEED_SAMPLE="1")
    result = run([BASH, str(SCRIPTS / "container_start.sh"), "seed"], env=env)
    assert result.returncode == 0, result.stderr
    root = tmp_path / "data" / "index"
    assert (root / "CURRENT").read_text().strip() == "20240101T000000Z"
    assert (root / "versions" / "20240101T000000Z" / "general" / "topn_ids.npy").read_bytes() == b"ids"
    assert (root / "versions" / "20240101T000000Z" / "_COMPLETE").exists()
    assert not [p for p in (root / "versions").iterdir() if p.name.startswith(".")]


def test_start_never_replaces_a_published_index(tmp_path: Path) -> None:
    fake_index_root(tmp_path / "bundled", "20240101T000000Z")
    fake_index_root(tmp_path / "data" / "index", "20250505T000000Z")
    env = start_env(tmp_path, M2GRL_SEED_SAMPLE="1")
    result = run([BASH, str(SCRIPTS / "container_start.sh"), "seed"], env=env)
    assert result.returncode == 0
    root = tmp_path / "data" / "index"
    assert (root / "CURRENT").read_text().strip() == "20250505T000000Z"
    assert sorted(p.name for p in (root / "versions").iterdir()) == ["20250505T000000Z"]


def test_start_builds_from_the_sample_when_nothing_is_bundled(tmp_path: Path) -> None:
    env = start_env(tmp_path, M2GRL_SAMPLE_DATA=str(tmp_path / "samples"), M2GRL_SEED_SAMPLE="1")
    result = run([BASH, str(SCRIPTS / "container_start.sh"), "seed"], env=env)
    assert result.returncode == 0, result.stderr
    root = tmp_path / "data" / "index"
    assert (root / "CURRENT").read_text().strip() == "built"
    assert log_lines(tmp_path / "stub.log") == [
        f"container_build.sh sample-index {root} {tmp_path / 'samples'}"
    ]


def test_start_serve_runs_m2grl_serve_with_workers_and_a_clean_multiproc_dir(tmp_path: Path) -> None:
    multiproc = tmp_path / "prom"
    multiproc.mkdir()
    (multiproc / "counter_123.db").write_bytes(b"stale")
    env = start_env(
        tmp_path, M2GRL_WORKERS="3", M2GRL_PORT="9123", PROMETHEUS_MULTIPROC_DIR=str(multiproc),
        M2GRL_SEED_SAMPLE="1",
    )  # fmt: skip
    fake_index_root(tmp_path / "bundled", "v1")
    result = run([BASH, str(SCRIPTS / "container_start.sh")], env=env)  # default: seed, then serve
    assert result.returncode == 0, result.stderr
    calls = log_lines(tmp_path / "stub.log")
    # `m2grl serve`, not the bare uvicorn command: its protocol answers parser-level 400s in JSON, and
    # it reads uvicorn's limits from the service settings (M2GRL_TIMEOUT_KEEP_ALIVE_S...)
    assert calls[0].split() == [
        "m2grl", "serve", "--index-root", str(tmp_path / "data" / "index"), "--host", "0.0.0.0",
        "--port", "9123", "--workers", "3",
    ]  # fmt: skip
    assert calls[1] == f"multiproc={multiproc}"
    assert list(multiproc.iterdir()) == []  # stale worker files would be summed into new counters
    assert (tmp_path / "data" / "index" / "CURRENT").read_text().strip() == "v1"


def test_start_single_worker_needs_no_multiproc_dir(tmp_path: Path) -> None:
    env = start_env(tmp_path, M2GRL_WORKERS="1")
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    result = run([BASH, str(SCRIPTS / "container_start.sh"), "serve"], env=env)
    assert result.returncode == 0
    assert log_lines(tmp_path / "stub.log")[1] == "multiproc=none"


def test_start_rejects_an_unknown_command(tmp_path: Path) -> None:
    result = run([BASH, str(SCRIPTS / "container_start.sh"), "launch"], env=start_env(tmp_path))
    assert result.returncode == 2 and "container_start.sh seed" in result.stderr


# ---------------------------------------------------------------- the real steps, without Docker

#: What the serve image's venv stage copies (test_dockerfile.py checks the Dockerfile says so).
SERVE_PACKAGES = ("core", "index", "app", "cli")
TRAINING = ("torch", "duckdb", "ibis", "gensim", "numba", "matplotlib", "optuna", "scipy", "sqlglot")


def copy_build_context(dest: Path, packages: tuple[str, ...]) -> Path:
    """What a venv stage of the Dockerfile COPYs: pyproject.toml, README.md and ``packages``."""
    dest.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, dest / name)
    for package in packages:
        shutil.copytree(REPO / package, dest / package, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def raw_request(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes on one connection: the status, headers (lower-case names) and body answered."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers, body


@pytest.mark.slow
def test_serve_image_steps_install_no_training_stack_and_serve_json_400s(tmp_path: Path) -> None:
    """The serve image's RUN steps for real in a fresh virtualenv (its requirement file from the package
    registry, then the serving packages --no-deps): the service and the CLI import, the training stack
    is absent. Then the CMD (container_start.sh, seeding as the demo image does, 2 workers) serves
    /readyz, /i2i, /metrics, and answers requests uvicorn's parser refuses with the JSON error body."""
    venv = tmp_path / "venv"
    src = copy_build_context(tmp_path / "src", SERVE_PACKAGES)
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "TMPDIR": str(tmp_path)}
    env.pop("VIRTUAL_ENV", None)
    env.pop("TORCH_INDEX_URL", None)
    result = run(
        [BASH, str(SCRIPTS / "container_build.sh"), "install", str(venv), str(src)], env=env, timeout=900
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    python = str(venv / "bin" / "python")
    # installed as a regular package inside the new venv, not the repository's editable one
    where = run([python, "-c", "import app.main, cli.main; print(app.main.__file__)"], cwd=tmp_path)
    assert where.returncode == 0, where.stderr
    assert where.stdout.strip().startswith(str(venv)), where.stdout
    present = run(
        [python, "-c", f"import importlib.util as u; print([m for m in {TRAINING!r} if u.find_spec(m)])"],
        cwd=tmp_path,
    )
    assert present.stdout.strip() == "[]", present.stdout + present.stderr
    assert run([str(venv / "bin" / "m2grl"), "serve", "--help"], cwd=tmp_path).returncode == 0
    system_path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if Path(p) != VENV_BIN)

    bundled, version = build_tiny_index(tmp_path / "bundle")
    port = free_port()
    start_env = {
        **env,
        "PATH": f"{venv / 'bin'}:{system_path}",
        "M2GRL_HOME": str(tmp_path / "home"),
        "M2GRL_SAMPLE_INDEX": str(bundled),
        "M2GRL_SEED_SAMPLE": "1",
        "M2GRL_INDEX_ROOT": str(tmp_path / "volume" / "index"),
        "M2GRL_HOST": "127.0.0.1",
        "M2GRL_PORT": str(port),
        "M2GRL_WORKERS": "2",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "multiproc"),
    }
    log = open(tmp_path / "server.log", "w")  # noqa: SIM115 - closed after the process
    proc = subprocess.Popen(
        [BASH, str(SCRIPTS / "container_start.sh")], env=start_env, stdout=log, stderr=log, cwd=tmp_path
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until(
            lambda: http_ok(f"{base}/readyz"), 90, "the container start script to serve /readyz",
            lambda: (tmp_path / "server.log").read_text()[-3000:],
        )  # fmt: skip
        assert (tmp_path / "volume" / "index" / "CURRENT").read_text().strip() == version
        answer = httpx.get(f"{base}/i2i/11", params={"k": 5}, timeout=5).json()
        assert answer["index_version"] == version and answer["returned"] == 5
        assert http_ok(f"{base}/healthz")
        assert "m2grl_index_info" in httpx.get(f"{base}/metrics", timeout=5).text
        for bad in (
            b"POST /i2i:batch HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
            b"GET /i2i/11 HTTP/1.1\r\nHost: x\r\nX-User-Id: a\x00b\r\n\r\n",
        ):
            status, headers, body = raw_request(port, bad)
            assert status == 400 and headers["content-type"] == "application/json", (bad, headers, body)
            error = json.loads(body)
            assert error["error"] == "bad_request", error
            assert error["detail"].startswith("unreadable HTTP request: "), error
    finally:
        stop(proc)
        log.close()


# ---------------------------------------------------------------- pin_base_image.sh

DIGEST = "sha256:" + "ab12" * 16


def pin(tmp_path: Path, answer: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    """Run pin_base_image.sh on a copy of the Dockerfile with a fake curl that answers the registry's
    token request, then the manifest HEAD with ``answer`` as its digest header."""
    dockerfile = tmp_path / "Dockerfile"
    shutil.copy2(REPO / "Dockerfile", dockerfile)
    stub(
        tmp_path / "bin",
        "curl",
        'case "$1" in -fsSL) echo \'{"token": "t0k"}\' ;; '
        f"-fsSI) printf 'HTTP/1.1 200 OK\\r\\nDocker-Content-Digest: {answer}\\r\\n\\r\\n' ;; esac",
    )
    env = {
        **os.environ,
        "PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}",
        "STUB_LOG": str(tmp_path / "log"),
    }
    return run([BASH, str(SCRIPTS / "pin_base_image.sh"), str(dockerfile)], env=env), dockerfile


def test_pin_base_image_rewrites_only_the_base_image_line(tmp_path: Path) -> None:
    result, dockerfile = pin(tmp_path, DIGEST)
    assert result.returncode == 0, result.stderr
    before = (REPO / "Dockerfile").read_text().splitlines()
    after = dockerfile.read_text().splitlines()
    changed = [(a, b) for a, b in zip(before, after, strict=True) if a != b]
    assert changed == [(next(ln for ln in before if ln.startswith("ARG PYTHON_IMAGE=")),
                        f"ARG PYTHON_IMAGE=python:3.11-slim-bookworm@{DIGEST}")]  # fmt: skip
    calls = log_lines(tmp_path / "log")
    assert "scope=repository:library/python:pull" in calls[0]
    assert calls[1].endswith("/v2/library/python/manifests/3.11-slim-bookworm")
    # run again on the pinned file: the tag is kept, the digest replaced, never doubled
    result, dockerfile = pin(tmp_path, "sha256:" + "cd34" * 16)
    assert result.returncode == 0, result.stderr
    assert "ARG PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:" + "cd34" * 16 in dockerfile.read_text()


def test_pin_base_image_refuses_an_answer_without_a_digest(tmp_path: Path) -> None:
    result, dockerfile = pin(tmp_path, "latest")
    assert result.returncode == 1 and "no digest for python:3.11-slim-bookworm" in result.stderr
    assert dockerfile.read_text() == (REPO / "Dockerfile").read_text()


@pytest.mark.parametrize(
    "script", ["install_system_deps.sh", "container_build.sh", "container_start.sh", "pin_base_image.sh"]
)
def test_scripts_pass_shellcheck(script: str) -> None:
    result = run([require_binary("shellcheck"), "--shell=bash", str(SCRIPTS / script)])
    assert result.returncode == 0, result.stdout
