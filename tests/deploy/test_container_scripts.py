"""scripts/install_system_deps.sh, container_build.sh and container_start.sh: the logic with stub
binaries (fast), then the Dockerfile's real install and start steps in a temporary virtualenv (slow)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.deploy.conftest import (
    SCRIPTS,
    VENV_BIN,
    build_tiny_index,
    free_port,
    http_ok,
    require_binary,
    run,
    stop,
    wait_until,
)

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
    for name in ("promtool", "prometheus", "redis-server", "wrk"):
        stub(bin_dir, name)
    stub(bin_dir, "apt-get")
    result = run_deps(bin_dir, log)
    assert result.returncode == 0, result.stderr
    assert "already present" in result.stdout
    assert log_lines(log) == []  # apt-get never called


def test_system_deps_installs_only_missing_packages_once(isolated_path: tuple[Path, Path]) -> None:
    bin_dir, log = isolated_path
    stub(bin_dir, "redis-server")
    # the fake apt-get "installs" every binary of the packages it is given
    stub(
        bin_dir,
        "apt-get",
        f'for p in "$@"; do case $p in prometheus) touch "{bin_dir}/promtool" "{bin_dir}/prometheus";; '
        f'wrk) touch "{bin_dir}/wrk";; esac; done; chmod +x "{bin_dir}"/* 2>/dev/null || true',
    )
    link_tools(bin_dir, "touch", "chmod")
    result = run_deps(bin_dir, log)
    assert result.returncode == 0, result.stdout + result.stderr
    calls = log_lines(log)
    assert calls[0] == "apt-get update -qq"
    installed = calls[1].split()
    assert installed[:5] == ["apt-get", "install", "-y", "-qq", "--no-install-recommends"]
    # promtool and prometheus come from one package: asked for once; redis-server was present
    assert sorted(installed[5:]) == ["prometheus", "wrk"]


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
    for args in ([], ["nope"], ["torch"], ["project", "/tmp/v"], ["sample-index", "/tmp/i"]):
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
    stub(bin_dir, "uvicorn", 'echo "multiproc=${PROMETHEUS_MULTIPROC_DIR:-none}" >> "$STUB_LOG"')
    return {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "STUB_LOG": str(tmp_path / "stub.log"),
        "M2GRL_HOME": str(home),
        "M2GRL_INDEX_ROOT": str(tmp_path / "data" / "index"),
        "M2GRL_SAMPLE_INDEX": str(tmp_path / "bundled"),
        **extra,
    }


def test_start_seeds_an_empty_root_from_the_bundled_index(tmp_path: Path) -> None:
    fake_index_root(tmp_path / "bundled", "20240101T000000Z")
    env = start_env(tmp_path)
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
    env = start_env(tmp_path)
    result = run([BASH, str(SCRIPTS / "container_start.sh"), "seed"], env=env)
    assert result.returncode == 0
    root = tmp_path / "data" / "index"
    assert (root / "CURRENT").read_text().strip() == "20250505T000000Z"
    assert sorted(p.name for p in (root / "versions").iterdir()) == ["20250505T000000Z"]


def test_start_builds_from_the_sample_when_nothing_is_bundled(tmp_path: Path) -> None:
    env = start_env(tmp_path, M2GRL_SAMPLE_DATA=str(tmp_path / "samples"))
    result = run([BASH, str(SCRIPTS / "container_start.sh"), "seed"], env=env)
    assert result.returncode == 0, result.stderr
    root = tmp_path / "data" / "index"
    assert (root / "CURRENT").read_text().strip() == "built"
    assert log_lines(tmp_path / "stub.log") == [
        f"container_build.sh sample-index {root} {tmp_path / 'samples'}"
    ]


def test_start_serve_runs_uvicorn_with_workers_and_a_clean_multiproc_dir(tmp_path: Path) -> None:
    multiproc = tmp_path / "prom"
    multiproc.mkdir()
    (multiproc / "counter_123.db").write_bytes(b"stale")
    env = start_env(tmp_path, M2GRL_WORKERS="3", M2GRL_PORT="9123", PROMETHEUS_MULTIPROC_DIR=str(multiproc))
    fake_index_root(tmp_path / "bundled", "v1")
    result = run([BASH, str(SCRIPTS / "container_start.sh")], env=env)  # default: seed, then serve
    assert result.returncode == 0, result.stderr
    calls = log_lines(tmp_path / "stub.log")
    assert calls[0].split() == [
        "uvicorn", "app.main:create_app", "--factory", "--host", "0.0.0.0", "--port", "9123",
        "--workers", "3", "--no-access-log", "--timeout-graceful-shutdown", "20", "--timeout-keep-alive", "5",
        "--limit-concurrency", "1000", "--backlog", "2048",
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


def overlay_site_packages(venv: Path) -> None:
    """Make the project's installed dependencies visible to ``venv`` (so pip resolves them without
    downloading torch again), leaving out the project itself, which the build step must install."""
    import site

    main_site = Path(next(p for p in site.getsitepackages() if p.endswith("site-packages")))
    overlay = venv.parent / "deps"
    overlay.mkdir()
    for entry in main_site.iterdir():
        name = entry.name.lower()
        if name.startswith(("m2grl_service", "__editable__", "_virtualenv")) or name.endswith(".pth"):
            continue
        (overlay / entry.name).symlink_to(entry)
    py = f"python{sys.version_info.major}.{sys.version_info.minor}"
    (venv / "lib" / py / "site-packages" / "deps-overlay.pth").write_text(f"{overlay}\n", encoding="utf-8")


def copy_build_context(dest: Path) -> Path:
    """What the Dockerfile's builder stage COPYs (see test_dockerfile.py)."""
    from tests.deploy.conftest import REPO

    dest.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, dest / name)
    for package in ("core", "model", "index", "offline", "app", "cli"):
        shutil.copytree(REPO / package, dest / package, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


@pytest.mark.slow
def test_dockerfile_steps_install_and_serve_in_a_fresh_venv(tmp_path: Path) -> None:
    """The builder's RUN steps (torch, then the project, non-editable) in a new virtualenv, then the
    CMD (container_start.sh: seed the volume from the bundled index, serve with 2 workers)."""
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)], timeout=60)
    # pip itself comes from the overlay too: the step under test is `pip install`, not ensurepip
    overlay_site_packages(venv)
    (venv / "bin" / "pip").write_text(
        f"#!{venv / 'bin' / 'python'}\nfrom pip._internal.cli.main import main\nimport sys\nsys.exit(main())\n"
    )
    (venv / "bin" / "pip").chmod(0o755)
    src = copy_build_context(tmp_path / "src")
    # every dependency is already satisfied through the overlay; pip only fetches the build backend
    # (setuptools, wheel) for the isolated build of the project, as `docker build` does
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "TMPDIR": str(tmp_path)}
    env.pop("VIRTUAL_ENV", None)
    env.pop("TORCH_INDEX_URL", None)
    result = run(
        [BASH, str(SCRIPTS / "container_build.sh"), "install", str(venv), str(src)], env=env, timeout=300
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    # installed as a regular package inside the new venv, not the repository's editable one
    where = run([str(venv / "bin" / "python"), "-c", "import app, cli; print(app.__file__)"], cwd=tmp_path)
    assert where.returncode == 0, where.stderr
    assert where.stdout.strip().startswith(str(venv)), where.stdout
    assert (venv / "bin" / "m2grl").exists()
    # uvicorn was satisfied from the overlay, so pip wrote no launcher: write the one it would have
    launcher = venv / "bin" / "uvicorn"
    launcher.write_text(
        f"#!{venv / 'bin' / 'python'}\nimport sys\nfrom uvicorn.main import main\n"
        "if __name__ == '__main__':\n    sys.exit(main())\n"
    )
    launcher.chmod(0o755)
    system_path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if Path(p) != VENV_BIN)

    bundled, version = build_tiny_index(tmp_path / "bundle")
    port = free_port()
    start_env = {
        **env,
        "PATH": f"{venv / 'bin'}:{system_path}",
        "M2GRL_HOME": str(tmp_path / "home"),
        "M2GRL_SAMPLE_INDEX": str(bundled),
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
    finally:
        stop(proc)
        log.close()


@pytest.mark.parametrize("script", ["install_system_deps.sh", "container_build.sh", "container_start.sh"])
def test_scripts_pass_shellcheck(script: str) -> None:
    result = run([require_binary("shellcheck"), "--shell=bash", str(SCRIPTS / script)])
    assert result.returncode == 0, result.stdout
