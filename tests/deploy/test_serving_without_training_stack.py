"""The serve image leaves out pyproject's `offline` extra (torch, duckdb, ibis, gensim, numba,
matplotlib...): the service, ``m2grl serve`` and ``m2grl index`` must work without it. Checked here in a
subprocess that refuses to import those packages (the slow test in test_container_scripts.py installs
the real serving set into a fresh virtualenv)."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

from tests.deploy.conftest import REPO, build_tiny_index, run

#: Top-level modules of the `offline` extra and what only they pull in.
BLOCKED = ("torch", "duckdb", "ibis", "sqlglot", "gensim", "numba", "matplotlib", "optuna", "scipy", "pandas")

PRELUDE = f"""
import importlib.abc, sys

class Blocked(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {BLOCKED!r}:
            raise ImportError(f"{{name}} is not in the serve image")
        return None

sys.meta_path.insert(0, Blocked())
"""


def run_blocked(code: str) -> dict[str, object]:
    """Run ``code`` (which prints one JSON line last) with the training stack unimportable."""
    result = run([sys.executable, "-c", PRELUDE + textwrap.dedent(code)], cwd=REPO, timeout=180)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_the_guard_blocks_what_it_names() -> None:
    out = run_blocked(
        """
        import json
        try:
            import torch
            print(json.dumps({"torch": "imported"}))
        except ImportError as exc:
            print(json.dumps({"torch": str(exc)}))
        """
    )
    assert out == {"torch": "torch is not in the serve image"}


def test_service_and_serving_cli_work_without_the_training_stack(tmp_path: Path) -> None:
    index_root, version = build_tiny_index(tmp_path / "bundle")
    out = run_blocked(
        f"""
        import json, os
        os.environ["M2GRL_INDEX_ROOT"] = {str(index_root)!r}
        import app.main, app.protocol, cli.serving, index.serving, index.publish
        from fastapi.testclient import TestClient
        from typer.testing import CliRunner
        from cli.main import app as cli

        runner = CliRunner()
        serve_help = runner.invoke(cli, ["serve", "--help"])
        listing = runner.invoke(cli, ["index", "list", "--index-root", {str(index_root)!r}])
        with TestClient(app.main.create_app()) as client:
            ready = client.get("/readyz").status_code
            answer = client.get("/i2i/11", params={{"k": 3}}).json()
        print(json.dumps({{
            "serve_help": serve_help.exit_code, "list": listing.exit_code, "listing": listing.output,
            "ready": ready, "returned": answer["returned"], "version": answer["index_version"],
        }}))
        """
    )
    assert out["serve_help"] == 0 and out["list"] == 0, out
    assert version in str(out["listing"])
    assert (out["ready"], out["returned"], out["version"]) == (200, 3, version)
