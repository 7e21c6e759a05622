"""The Dockerfile: hadolint clean; a slim default ``serve`` target without the training stack or the
bundled sample, an ``offline`` target with it, an opt-in ``demo`` target with the sample index; non-root,
health-checked on readiness, dependency layers independent of the sources, and built only from the
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


#: The training stack the serving image must not carry (pyproject's `offline` extra).
TRAINING = ("torch", "duckdb", "ibis", "gensim", "numba", "matplotlib", "optuna", "scipy")


def ancestry(name: str) -> list[str]:
    """``name`` and the stages it is built FROM, nearest first."""
    parents = {
        rest.split()[-1]: rest.split()[0]
        for word, rest in instructions()
        if word == "FROM" and " AS " in rest.upper()
    }
    chain = [name]
    while parents.get(chain[-1]) in parents:
        chain.append(parents[chain[-1]])
    return chain


def copied_from(name: str) -> set[str]:
    """The stages whose files ``name`` (or a stage it is built FROM) copies in."""
    st = stages()
    return {
        m.group(1)
        for stage in ancestry(name)
        for word, rest in st[stage]
        if word == "COPY"
        for m in [re.search(r"--from=(\S+)", rest)]
        if m
    }


def built_from(name: str) -> set[str]:
    """Every stage that contributes to ``name``: its ancestry and, recursively, what they copy from."""
    seen: set[str] = set()
    todo = [name]
    while todo:
        stage = todo.pop()
        if stage in seen:
            continue
        seen.add(stage)
        todo += ancestry(stage)[1:] + sorted(copied_from(stage))
    return seen


def test_targets_and_the_slim_serve_image_is_the_default() -> None:
    st = stages()
    assert {"serve", "offline", "demo"} <= set(st)
    # `docker build .` without --target builds the last stage: production must be it
    assert list(st)[-1] == "serve"
    for target in ("serve", "offline", "demo"):
        users = [rest for stage in ancestry(target) for word, rest in st[stage] if word == "USER"]
        assert users and not users[0].startswith(("root", "0")), (target, users)
        # the final images install nothing: they copy a virtualenv built in an earlier stage
        runtime = [s for s in ancestry(target) if s not in built_from("serve-venv") | {"demo-index"}]
        assert not any(word == "RUN" and "pip" in rest for s in runtime for word, rest in st[s])


def test_serve_image_has_no_training_stack_and_no_sample() -> None:
    contributing = built_from("serve")
    assert "offline-deps" not in contributing and "demo-index" not in contributing
    steps = [(word, rest) for stage in contributing for word, rest in stages()[stage]]
    assert not any(word == "RUN" and "container_build.sh torch" in rest for word, rest in steps)
    assert not any(
        word == "COPY" and rest.split()[0] in ("data/", "model/", "offline/") for word, rest in steps
    )
    # its requirement file is pyproject's base dependencies (+ EXTRAS, the `gpu` extra), never `offline`
    reqs = [rest for word, rest in stages()["requirements"] if word == "RUN"][0]
    serve_call = re.search(r"requirements /src /reqs/serve\.txt \"([^\"]*)\"", reqs)
    assert serve_call is not None and serve_call.group(1) == "${EXTRAS}"
    import tomllib

    with open(REPO / "pyproject.toml", "rb") as fh:
        project = tomllib.load(fh)["project"]
    names = {re.split(r"[\[<>=!~; ]", req, maxsplit=1)[0].lower() for req in project["dependencies"]}
    assert not {n for n in names if n.startswith(TRAINING)}, names
    offline = " ".join(project["optional-dependencies"]["offline"])
    assert all(pkg in offline for pkg in TRAINING)


def test_offline_image_has_torch_and_every_package() -> None:
    contributing = built_from("offline")
    assert "offline-venv" in contributing and "demo-index" not in contributing
    steps = [(word, rest) for stage in contributing for word, rest in stages()[stage]]
    assert any(word == "RUN" and "container_build.sh torch" in rest for word, rest in steps)
    copies = {rest.split()[0] for stage in ancestry("offline-venv") for word, rest in stages()[stage]
              if word == "COPY" and "--from" not in rest}  # fmt: skip
    assert {"model/", "offline/", "index/", "app/", "cli/", "core/"} <= copies


def test_sample_index_only_in_the_opt_in_demo_image() -> None:
    st = stages()
    assert "demo-index" in copied_from("demo")
    assert [s for s in st if "demo-index" in built_from(s)] == ["demo-index", "demo"]
    env = " ".join(rest for word, rest in st["demo"] if word == "ENV")
    assert "M2GRL_SEED_SAMPLE=1" in env  # seeding the volume is the demo's, off everywhere else
    for target in ("serve", "offline"):
        assert not any("SEED_SAMPLE" in rest for s in ancestry(target) for _, rest in st[s])


def test_dependency_layers_come_before_the_sources() -> None:
    """A source change must not re-run a dependency install: each venv stage's install steps see only
    the requirement files (derived from pyproject.toml in a stage of their own) and the build script."""
    st = stages()
    for deps in ("serve-deps", "offline-deps"):
        for stage in ancestry(deps):
            for word, rest in st[stage]:
                if word == "COPY":
                    source = rest.split()[-2]
                    assert "--from=requirements" in rest or source == "scripts/container_build.sh", (
                        stage,
                        rest,
                    )
    requirements = [rest for word, rest in st["requirements"] if word == "COPY"]
    assert sorted(r.split()[0] for r in requirements) == ["pyproject.toml", "scripts/container_build.sh"]
    for venv in ("serve-venv", "offline-venv"):
        runs = [rest for word, rest in st[venv] if word == "RUN"]
        assert runs == ["bash scripts/container_build.sh project /opt/venv /src"], runs


def test_cpu_torch_by_default_and_gpu_extra_by_build_arg() -> None:
    st = stages()
    args = {
        rest.split("=", 1)[0]: rest.split("=", 1)[1].strip('"')
        for stage in ("requirements", "offline-deps")
        for word, rest in st[stage]
        if word == "ARG"
    }
    assert args["TORCH_SPEC"] == "torch==2.13.0"
    assert args["TORCH_INDEX_URL"].endswith("/whl/cpu")
    assert args["EXTRAS"] == ""
    runs = " ".join(rest for word, rest in st["requirements"] if word == "RUN")
    assert '"offline,${EXTRAS}"' in runs
    assert "gpu" in _pyproject_extras()


def test_base_image_is_one_build_arg_for_every_stage() -> None:
    """Every stage starts from `base` or another stage, and `base` from ARG PYTHON_IMAGE, the one line
    scripts/pin_base_image.sh rewrites to IMAGE@sha256:DIGEST (test_container_scripts.py)."""
    froms = [rest.split()[0] for word, rest in instructions() if word == "FROM"]
    names = set(stages())
    assert froms[0] == "${PYTHON_IMAGE}" and all(f in names for f in froms[1:]), froms
    (line,) = [ln for ln in DOCKERFILE.read_text().splitlines() if ln.startswith("ARG PYTHON_IMAGE=")]
    image = line.split("=", 1)[1]
    assert re.fullmatch(r"python:3\.11-slim-bookworm(@sha256:[0-9a-f]{64})?", image), image


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


def test_serving_images_check_readiness_and_run_the_start_script() -> None:
    st = stages()
    for target in ("serve", "demo"):
        steps = [(word, rest) for stage in ancestry(target) for word, rest in st[stage]]
        health = [rest for word, rest in steps if word == "HEALTHCHECK"]
        assert len(health) == 1 and "/readyz" in health[0]
        cmd = [rest for word, rest in steps if word == "CMD"]
        assert cmd[0] == '["bash", "/opt/m2grl/scripts/container_start.sh"]'
        env = " ".join(rest for word, rest in steps if word == "ENV")
        assert "M2GRL_INDEX_ROOT=/data/index" in env and "PATH=/opt/venv/bin" in env
    offline = [(word, rest) for stage in ancestry("offline") for word, rest in st[stage]]
    assert not any(word in ("HEALTHCHECK", "EXPOSE") for word, _ in offline)


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
    assert "pyproject.toml" in sources and "data/" in sources and "data/README.md" in sources
    for src in sources:
        assert (REPO / src).exists(), f"COPY {src}: not in the repository"
        assert not _ignored(src.rstrip("/"), patterns), f"COPY {src}: excluded by .dockerignore"
    # the packages setuptools installs are all copied into the builder
    for package in ("core", "model", "index", "offline", "app", "cli"):
        assert f"{package}/" in sources
    # and what must stay out of the build context does
    for heavy in (".venv", ".git", "tests", "artifacts"):
        assert _ignored(heavy, patterns), heavy
