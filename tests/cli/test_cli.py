"""The CLI: every subcommand documents every option, and bad input ends in one clear line, not a traceback."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer.main
from typer.core import TyperOption
from typer.testing import CliRunner

from cli.main import app
from index.config import IndexConfig
from model.config import M2GRLConfig

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


def test_option_help_and_defaults_come_from_the_config_schema() -> None:
    result = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "250"})
    window = M2GRLConfig.model_fields["window"].description
    assert f"{window} (default: 9)" in result.output
    # a trainer field shows M2GRL's default for it, not the plain TrainerConfig one (lazy_adam)
    assert "(default: row_adagrad)" in result.output
    result = runner.invoke(app, ["build-index", "--help"], env={"COLUMNS": "250"})
    assert IndexConfig.model_fields["recall_floor"].description in result.output


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
        (
            ["prepare", "--walks-per-node", "-1"],
            "walks_per_node: Input should be greater than or equal to 0, got -1",
        ),
        (["prepare", "--memory-limit", "lots"], "memory limit 'lots' is not a size like 512MB or 6GB"),
        (["evaluate", "--ks", "20,x"], "--ks expects comma-separated integers, got '20,x'"),
        (["evaluate", "--ks", "0"], "ks[0]: Input should be greater than or equal to 1, got 0"),
        (["evaluate", "--triggers", "0"], "n_triggers: Input should be greater than or equal to 1, got 0"),
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
    from offline.evaluation.config import ProtocolConfig

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


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["evaluate", "--served", "control"],
            "--served: expected VARIANT:MIX like 'control:m2grl=0.5,cooc=0.5'",
        ),
        (["evaluate", "--served", "c:bm25=1"], "--served c: unknown channel 'bm25'"),
        (["build-index", "--default-mix", "m2grl"], "--default-mix: expected channel=weight pairs"),
        (["build-index", "--default-mix", "no-such-file"], "--default-mix: expected channel=weight pairs"),
        (["tune", "--config", "best.toml"], "--config goes with --mix-only"),
        (["build-index", "--cold-rule", "side-ridge"], "--cold-rule: 'side-ridge' is not one of"),
        (["build-index", "--cold-scale", "1.5"], "--cold-scale: must be in (0, 1], got 1.5"),
    ],
)
def test_channel_options_fail_in_one_line(args: list[str], message: str) -> None:
    result = runner.invoke(app, args, env={"COLUMNS": "300"})
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())
    assert "Traceback" not in result.output


def test_build_index_adds_the_channels_of_the_models_dataset(tmp_path: Path) -> None:
    import numpy as np

    from core.atomic import read_json
    from core.layout import DatasetLayout, IndexRoot
    from tests.index.conftest import write_model
    from tests.offline.eval_dataset import write_tiny_dataset

    ds = write_tiny_dataset(tmp_path / "ds")
    items = np.load(DatasetLayout(ds).vocab("item"))
    vectors = np.random.default_rng(0).normal(size=(len(items), 4)).astype(np.float32)
    model = write_model(
        tmp_path / "model", vectors, ids=items, manifest={"views": ["item"], "dataset": str(ds)}
    )
    root = tmp_path / "index"
    chosen = tmp_path / "best_mix.txt"  # as m2grl tune writes it
    chosen.write_text("m2grl=0.25,cooc=0.75,popular=0.5,category_popular=0.75\n")
    built = ["category_popular", "cooc", "popular"]  # the dataset has a category view
    for args, channels, mix in (
        ([], built, {"m2grl": 0.5, "cooc": 0.5, "popular": 0.35}),
        (["--default-mix", "m2grl=1,cooc=3"], built, {"m2grl": 1.0, "cooc": 3.0}),
        (
            ["--default-mix", str(chosen)],
            built,
            {"m2grl": 0.25, "cooc": 0.75, "popular": 0.5, "category_popular": 0.75},
        ),
        (["--no-channels"], [], None),
    ):
        result = runner.invoke(app, ["build-index", "--model", str(model), "--index-root", str(root), *args])
        assert result.exit_code == 0, result.output
        version = IndexRoot(root).current.read_text().strip()
        manifest = read_json(IndexRoot(root).version(version).manifest)
        assert sorted(manifest["channels"]) == channels and manifest["default_mix"] == mix
    # a model whose manifest names no dataset: say which option to give, after the model was checked
    bare = write_model(tmp_path / "bare", vectors, ids=items, manifest={"views": ["item"]})
    result = runner.invoke(app, ["build-index", "--model", str(bare), "--index-root", str(tmp_path / "i2")])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert (
        "the model manifest names no dataset is not a folder; give the training dataset, or --no-channels"
        in (" ".join(result.output.split()))
    )
    broken = tmp_path / "missing-model"
    result = runner.invoke(app, ["build-index", "--model", str(broken), "--index-root", str(tmp_path / "i3")])
    assert result.exit_code == 2 and "model folder does not exist" in result.output


def test_build_index_places_the_catalogues_cold_items(tmp_path: Path) -> None:
    """The default places the dataset's cold items at the calibrated scale; --cold-rule none does not."""
    import numpy as np

    from cli.main import COLD_DECAY, COLD_SCALE
    from core.atomic import read_json
    from core.layout import IndexRoot
    from offline.jobs.cold_items import DEFAULT_COLD_DECAY, DEFAULT_COLD_SCALE
    from tests.index import cold_fixtures as F

    model = F.write_model(tmp_path / "model", F.write_dataset(tmp_path / "ds"))
    root = tmp_path / "index"
    for args, cold in (([], 3), (["--cold-rule", "none"], None), (["--cold-scale", "0.5"], 3)):
        result = runner.invoke(
            app, ["build-index", "--model", str(model), "--index-root", str(root), "--no-channels", *args]
        )
        assert result.exit_code == 0, result.output
        version = IndexRoot(root).version(IndexRoot(root).current.read_text().strip())
        manifest = read_json(version.manifest)
        assert (manifest["cold"] or {}).get("items") == cold
        if cold and not args:
            assert manifest["cold"]["scale"] == DEFAULT_COLD_SCALE == COLD_SCALE
            assert manifest["cold"]["decay"] == DEFAULT_COLD_DECAY == COLD_DECAY
            assert manifest["cold"]["rule"] == "recent-mean"
            assert np.load(version.cold).sum() == 3
