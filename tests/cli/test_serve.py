"""``m2grl serve``: start-up errors in one line, a warning for an empty index root, uvicorn's limits
from the settings, the JSON 400 protocol, and the temporary metrics folder removed at exit; ``m2grl
index list`` marking refused versions, and the faiss loader's lines silenced."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from typer.testing import CliRunner

from app.protocol import JsonErrorsHttpToolsProtocol
from cli.main import app
from core.atomic import atomic_write_bytes
from core.layout import IndexRoot
from index.publish import PIN_FILE
from tests.app.conftest import REPO
from tests.app.conftest import built as built  # noqa: F401 - the session fixture index_root needs
from tests.app.conftest import index_root as index_root  # noqa: F401 - the fixture

runner = CliRunner()


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """``serve`` exports its settings to the environment (for the workers): restore it after each test."""
    for name in [n for n in os.environ if n.startswith("M2GRL_")] + ["PROMETHEUS_MULTIPROC_DIR"]:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("M2GRL_INDEX_ROOT", "unset")  # registered for restoration; serve overwrites it


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """uvicorn.run replaced by a recorder of its arguments (and of the metrics folder while it runs)."""
    calls: list[dict[str, Any]] = []

    def fake_run(target: str, **kwargs: Any) -> None:
        folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        calls.append({"target": target, "multiproc": folder, "exists": bool(folder and Path(folder).is_dir()),
                      **kwargs})  # fmt: skip

    monkeypatch.setattr(uvicorn, "run", fake_run)
    return calls


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--workers", "0"], {}, "error: --workers must be at least 1, got 0"),
        (["--index-root", "{file}"], {}, "error: --index-root {file} is a file, not an index root folder"),
        (
            [],
            {"M2GRL_MAX_K": "0"},
            "error: bad settings: max_k: Input should be greater than or equal to 1 (got '0')",
        ),
        (
            [],
            {"M2GRL_RECENT_STORE": "disk"},
            "error: bad settings: recent_store: Input should be 'memory' or 'redis' (got 'disk')",
        ),
        (
            [],
            {"M2GRL_CONFIG_FILE": "/nonexistent.yaml"},
            "error: bad settings: M2GRL_CONFIG_FILE: no such file /nonexistent.yaml",
        ),
        (["--config-file", "/nonexistent.yaml"], {}, "error: --config-file /nonexistent.yaml: no such file"),
    ],
    ids=[
        "workers-0",
        "root-is-a-file",
        "bad-max-k",
        "bad-store",
        "missing-config-env",
        "missing-config-option",
    ],
)
def test_serve_errors_are_one_line(
    args: list[str], env: dict[str, str], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    started: list[dict[str, Any]],
) -> None:  # fmt: skip
    a_file = tmp_path / "index.txt"
    a_file.write_text("not a folder")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    args = [a.replace("{file}", str(a_file)) for a in args]
    if "--index-root" not in args:
        args += ["--index-root", str(tmp_path / "index")]
    result = runner.invoke(app, ["serve", *args])
    assert result.exit_code == 2
    assert result.output.strip() == message.replace("{file}", str(a_file))
    assert started == []


def test_an_empty_index_root_is_a_warning_once_then_uvicorn_runs_with_the_limits(
    tmp_path: Path, started: list[dict[str, Any]], caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "index"
    root.mkdir()
    with caplog.at_level(logging.INFO):
        result = runner.invoke(
            app, ["serve", "--index-root", str(root)], env={"M2GRL_TIMEOUT_KEEP_ALIVE_S": "7"}
        )
    assert result.exit_code == 0, result.output
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [r.getMessage() for r in warnings] == [
        f"index root {root} has no CURRENT: the service starts unready until a version is published"
    ]
    (call,) = started
    assert call["target"] == "app.main:create_app" and call["http"] is JsonErrorsHttpToolsProtocol
    assert (call["timeout_keep_alive"], call["limit_concurrency"], call["backlog"]) == (7, 1000, 2048)
    # in-flight requests get 20 s after SIGTERM: inside the Deployment's 30 s grace period less its preStop
    assert call["timeout_graceful_shutdown"] == 20


def test_the_metrics_folder_of_several_workers_is_removed_at_exit(
    tmp_path: Path, started: list[dict[str, Any]]
) -> None:
    root = tmp_path / "index"
    result = runner.invoke(app, ["serve", "--index-root", str(root), "--workers", "2"])
    assert result.exit_code == 0, result.output
    (call,) = started
    assert call["workers"] == 2 and call["exists"] is True
    assert not Path(call["multiproc"]).exists()
    assert "PROMETHEUS_MULTIPROC_DIR" not in os.environ


def test_index_list_marks_current_pinned_and_refused_versions(index_root: Path) -> None:
    layout = IndexRoot(index_root)
    shutil.copytree(layout.version("v1").root, layout.version("v3").root)
    (layout.version("v3").items).write_bytes(b"garbage")
    (index_root / PIN_FILE).write_text("v2\n")
    result = runner.invoke(app, ["index", "list", "--index-root", str(index_root)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    # oldest build first: v3, a copy of v1, has v1's build time
    assert lines[0] == "* v1" and lines[2] == "  v2  (pinned)"
    assert lines[1].startswith("  v3  (refused: v3: items.npy has 7 bytes, the manifest says")
    atomic_write_bytes(layout.current, b"v9\n")
    last = runner.invoke(app, ["index", "list", "--index-root", str(index_root)]).output.splitlines()[-1]
    assert last == "* v9  (refused: CURRENT names no complete version)"


def test_faiss_loader_lines_are_silenced(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "cli.main", "index", "list", "--index-root", str(tmp_path)],
        capture_output=True, text=True, timeout=120, cwd=REPO,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "swigfaiss" not in out.stderr and "ModuleNotFoundError" not in out.stderr
