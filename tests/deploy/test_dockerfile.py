"""The Dockerfile: hadolint clean, multi-stage, non-root, health-checked, and built only from the
project's scripts (which test_container_scripts.py runs)."""

from __future__ import annotations

import fnmatch
import re
import shlex

from tests.deploy.conftest import REPO, require_binary, run

DOCKERFILE = REPO / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def stages() -> dict[str, list[tuple[str, str]]]:
    """Instructions per build stage name."""
    out: dict[str, list[tuple[str, str]]] = {}
    current = None
    for word, rest in instructions():
        if word == "FROM":
            current = rest.split()[-1] if " AS " in rest.upper() else rest
            out[current] = []
        elif current is not None:
            out[current].append((word, rest))
    return out


def test_hadolint_clean() -> None:
    hadolint = require_binary("hadolint")
    result = run([hadolint, "--failure-threshold", "info", str(DOCKERFILE)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_multi_stage_with_non_root_runtime_last() -> None:
    st = stages()
    assert list(st) == ["base", "builder", "sample", "runtime"]
    runtime = st["runtime"]
    users = [rest for word, rest in runtime if word == "USER"]
    assert users and not users[-1].startswith(("root", "0")), users
    # the runtime stage installs nothing: it only copies the built virtualenv and the sample index
    assert not any(word == "RUN" and "pip" in rest for word, rest in runtime)
    copies_from = {
        m.group(1)
        for word, rest in runtime
        if word == "COPY"
        for m in [re.search(r"--from=(\S+)", rest)]
        if m
    }
    assert copies_from == {"builder", "sample"}


def test_cpu_torch_by_default_and_gpu_extra_by_build_arg() -> None:
    args = {
        rest.split("=", 1)[0]: rest.split("=", 1)[1].strip('"')
        for word, rest in stages()["builder"]
        if word == "ARG"
    }
    assert args["TORCH_SPEC"] == "torch==2.13.0"
    assert args["EXTRAS"] == ""
    runs = [rest for word, rest in stages()["builder"] if word == "RUN"]
    assert any("container_build.sh project" in r and "${EXTRAS}" in r for r in runs)
    assert "gpu" in _pyproject_extras()


def _pyproject_extras() -> set[str]:
    import tomllib

    with open(REPO / "pyproject.toml", "rb") as fh:
        return set(tomllib.load(fh)["project"]["optional-dependencies"])


def test_every_run_step_is_a_project_script() -> None:
    """No inline install logic: the tests exercise the same steps by running the scripts."""
    for name, steps in stages().items():
        for word, rest in steps:
            if word != "RUN":
                continue
            if name == "runtime":
                assert rest.startswith(("groupadd", "useradd")), (
                    f"runtime RUN does more than create the user: {rest}"
                )
            else:
                assert rest.startswith("bash scripts/container_build.sh "), f"stage {name}: {rest}"


def test_healthcheck_probes_healthz_and_cmd_runs_start_script() -> None:
    runtime = stages()["runtime"]
    health = [rest for word, rest in runtime if word == "HEALTHCHECK"]
    assert len(health) == 1 and "/healthz" in health[0]
    cmd = [rest for word, rest in runtime if word == "CMD"]
    assert cmd == ['["bash", "/opt/m2grl/scripts/container_start.sh"]']
    env = " ".join(rest for word, rest in runtime if word == "ENV")
    assert "M2GRL_INDEX_ROOT=/data/index" in env and "PATH=/opt/venv/bin" in env


def _ignored(path: str, patterns: list[str]) -> bool:
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern.lstrip("!").rstrip("/")
        if (
            fnmatch.fnmatch(path, pat)
            or fnmatch.fnmatch(path, pat.replace("**/", ""))
            or path.startswith(pat + "/")
        ):
            ignored = not negate
    return ignored


def test_copied_sources_exist_and_are_not_dockerignored() -> None:
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    sources = []
    for _, steps in stages().items():
        for word, rest in steps:
            if word == "COPY" and "--from=" not in rest:
                sources += shlex.split(rest)[:-1]
    assert "pyproject.toml" in sources and "data/" in sources
    for src in sources:
        assert (REPO / src).exists(), f"COPY {src}: not in the repository"
        assert not _ignored(src.rstrip("/"), patterns), f"COPY {src}: excluded by .dockerignore"
    # the packages setuptools installs are all copied into the builder
    for package in ("core", "model", "index", "offline", "app", "cli"):
        assert f"{package}/" in sources
    # and what must stay out of the build context does
    for heavy in (".venv", ".git", "tests", "artifacts"):
        assert _ignored(heavy, patterns), heavy
