"""The CLI: every subcommand documents every option, and bad input ends in one clear line, not a traceback."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer.main
from typer.core import TyperOption
from typer.testing import CliRunner

from cli.main import app

runner = CliRunner()
COMMANDS = ["prepare", "train", "train-metric", "evaluate", "build-index", "serve", "synth", "demo"]


def _options(name: str) -> list[TyperOption]:
    group = typer.main.get_command(app)
    command = group.commands[name]  # type: ignore[attr-defined]
    return [p for p in command.params if isinstance(p, TyperOption)]


@pytest.mark.parametrize("name", COMMANDS)
def test_every_option_has_help(name: str) -> None:
    options = _options(name)
    assert options, f"{name} has no options"
    for option in options:
        assert option.help, f"{name} {option.opts[0]} has no help text"
    result = runner.invoke(app, [name, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for option in options:
        assert option.opts[0] in result.output


def test_top_level_help_lists_all_commands() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for name in COMMANDS + ["index"]:
        assert re.search(rf"\b{re.escape(name)}\b", result.output)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["prepare", "--source", "csvish"], "unknown --source 'csvish'; valid: movielens, taobao, generic"),
        (["prepare", "--engine", "hive"], "unknown --engine 'hive'; valid: duckdb, spark"),
        (["prepare", "--source", "generic"], "--input is required for the generic source"),
        (["prepare", "--input", "/nonexistent/ratings"], "input /nonexistent/ratings does not exist"),
        (["prepare", "--walks-per-node", "-1"], "PrepareConfig.walks_per_node: must be >= 0, got -1"),
        (["prepare", "--memory-limit", "lots"], "memory limit 'lots' is not a size like 512MB or 6GB"),
        (["evaluate", "--ks", "20,x"], "--ks expects comma-separated integers, got '20,x'"),
        (["evaluate", "--ks", "0"], "ks must be a non-empty tuple of positive ints, got (0,)"),
        (["evaluate", "--triggers", "0"], "n_triggers must be >= 1, got 0"),
        (["evaluate", "--seeds", "1,two"], "--seeds expects comma-separated integers, got '1,two'"),
    ],
)
def test_bad_input_is_one_clear_line(args: list[str], message: str, tmp_path: Path) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def test_evaluate_passes_the_protocol_options_through(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import offline.evaluation.job as job
    from offline.evaluation.protocol import ProtocolConfig

    seen: dict[str, object] = {}

    def fake_evaluate(dataset: Path, output: Path, **kwargs: object) -> Path:
        seen.update(kwargs, dataset=dataset)
        return output / "report.md"

    monkeypatch.setattr(job, "evaluate", fake_evaluate)
    args = ["evaluate", "--dataset", str(tmp_path), "--output", str(tmp_path / "r"), "--methods", "itemcf"]
    args += ["--ks", "10,30", "--triggers", "3", "--exclude-seen", "--recent-days", "7", "--seeds", "4,5"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert seen["protocol"] == ProtocolConfig(ks=(10, 30), n_triggers=3, exclude_seen=True, recent_days=7.0)
    assert seen["seeds"] == (4, 5) and seen["methods"] == ["itemcf"] and seen["diversity"] is False
    spaced = runner.invoke(app, [*args[:6], "itemcf, m2grl"])
    assert spaced.exit_code == 0, spaced.output
    assert seen["methods"] == ["itemcf", "m2grl"] and seen["diversity"] is True
    default = runner.invoke(app, args[:7])
    assert default.exit_code == 0, default.output
    assert seen["protocol"] == ProtocolConfig()
