"""``m2grl tune``: a tiny Optuna budget on the bundled Taobao sample, its files, and the TOML round trip
into ``m2grl train --config`` / ``prepare --config``."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cli.main import app
from core.config_files import read_toml_overrides, toml_text
from index.channels import parse_mix
from model.config import M2GRLConfig
from offline.data.config import PrepareConfig
from offline.evaluation.tune import (
    TuneSpace,
    best_weights,
    mix_text,
    pool_by_users,
    served_mix,
    tune,
    weight_triples,
)

TAOBAO = Path(__file__).resolve().parents[2] / "data" / "taobao-sample" / "UserBehavior_head_sample.csv.gz"
MOVIELENS = Path(__file__).resolve().parents[2] / "data" / "movielens-small"


@pytest.fixture(scope="module")
def taobao(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from offline.data.prepare import prepare_from_source

    return prepare_from_source("taobao", TAOBAO, tmp_path_factory.mktemp("tune") / "taobao")


def test_tune_tiny_budget_writes_trials_and_a_config_train_reads(taobao: Path, tmp_path: Path) -> None:
    space = TuneSpace(
        epochs=(1, 1),
        window=(2, 3),
        dims=(8, 16),
        session_gaps_s=(3_600,),
        popular_weights=(0.0, 0.35),
        category_popular_weights=(0.0, 0.5),
    )
    best = tune(taobao, tmp_path / "tune", trials=2, space=space, progress=False)
    trials = json.loads((tmp_path / "tune" / "trials.json").read_text())
    assert len(trials["trials"]) == 2
    assert {row["session_gap_s"] for row in trials["trials"]} <= {3_600, 7 * 86_400}  # the preset's gap too
    for row in trials["trials"]:
        assert 0.0 <= row["Recall@50"] <= 1.0 and 0.0 <= row["HitRate@50"] <= 1.0
        assert row["epochs"] == 1 and 2 <= row["window"] <= 3 and row["dim"] in (8, 16)
    best_row = max(trials["trials"], key=lambda r: r["HitRate@50"])
    chosen = tomllib.loads(best.read_text())
    assert chosen["window"] == best_row["window"] and chosen["norm_exponent"] == best_row["norm_exponent"]
    config = read_toml_overrides(best, M2GRLConfig())
    assert config.window == best_row["window"] and config.trainer.epochs == 1
    assert config.dim == best_row["dim"]
    prepare = read_toml_overrides(tmp_path / "tune" / "best_prepare.toml", PrepareConfig())
    assert prepare.session_gap_s == best_row["session_gap_s"]
    md = (tmp_path / "tune" / "trials.md").read_text()
    assert md.count("\n| ") == 3 + 13  # header + 2 trials, then header + 3 x 2 x 2 mixes
    # the served mix: each (cooc, popular, category) triple scored on the best trial's model, the best chosen
    mixes = trials["mix"]["mixes"]
    weights = ("cooc_weight", "popular_weight", "category_popular_weight")
    assert [tuple(m[w] for w in weights) for m in mixes] == [
        (c, p, q) for c in (0.25, 0.5, 0.75) for p in (0.0, 0.35) for q in (0.0, 0.5)
    ]
    for m in mixes:  # a channel at weight 0 is left out of the mix
        served = parse_mix(m["mix"])
        assert served.get("popular", 0.0) == m["popular_weight"] and ("popular" in served) == (
            m["popular_weight"] > 0
        )
        assert served.get("category_popular", 0.0) == m["category_popular_weight"]
        assert ("category_popular" in served) == (m["category_popular_weight"] > 0)
    # a log split by time: the mix is scored on the validation period and the one before it, pooled
    alone = trials["mix"]["alone"]
    assert alone["users"] > best_row["users"] and all(m["users"] == alone["users"] for m in mixes)
    top = max(m["HitRate@50"] + m["Recall@50"] for m in mixes)
    chosen = parse_mix((tmp_path / "tune" / "best_mix.txt").read_text().strip())
    best_triples = [tuple(m[w] for w in weights) for m in mixes if m["HitRate@50"] + m["Recall@50"] == top]
    assert (chosen["cooc"], chosen.get("popular", 0.0), chosen.get("category_popular", 0.0)) in best_triples
    assert chosen["m2grl"] == pytest.approx(1 - chosen["cooc"]) and trials["mix"]["best"] in md
    assert not (tmp_path / "tune" / "work").exists()  # the re-prepared datasets are removed


def test_cli_train_config_and_bad_options_fail_in_one_line(taobao: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    bad = tmp_path / "bad.toml"
    bad.write_text("norm_exponent = 2.0\n")
    result = runner.invoke(
        app, ["train", "--dataset", str(taobao), "--output", str(tmp_path / "m"), "--config", str(bad)]
    )
    assert result.exit_code == 2
    assert "norm_exponent" in result.output and "Traceback" not in result.output
    result = runner.invoke(app, ["tune", "--dataset", str(taobao), "--epochs", "3"])
    assert result.exit_code == 2 and "--epochs expects LO,HI" in result.output
    good = tmp_path / "good.toml"
    good.write_text(toml_text({"epochs": 1, "window": 2, "norm_exponent": 0.0}))
    out = tmp_path / "model"
    result = runner.invoke(
        app, ["train", "--dataset", str(taobao), "--output", str(out), "--config", str(good), "--window", "3"]
    )
    assert result.exit_code == 0, result.output
    stored = json.loads((out / "manifest.json").read_text())["config"]
    # the flag wins over the file
    assert (stored["trainer"]["epochs"], stored["window"], stored["norm_exponent"]) == (1, 3, 0.0)


def test_tune_mix_only_trains_once_and_writes_the_mix_build_index_reads(taobao: Path, tmp_path: Path) -> None:
    config = tmp_path / "small.toml"
    config.write_text(toml_text({"epochs": 1, "dim": 8, "window": 2}))
    out = tmp_path / "mix"
    result = CliRunner().invoke(
        app, ["tune", "--mix-only", "--dataset", str(taobao), "--output", str(out), "--config", str(config)]
    )
    assert result.exit_code == 0, result.output
    chosen = parse_mix((out / "best_mix.txt").read_text().strip())
    assert set(chosen) <= {"m2grl", "cooc", "popular", "category_popular"} and chosen[
        "m2grl"
    ] == pytest.approx(1 - chosen["cooc"])
    md = (out / "mixes.md").read_text()
    assert md.count("\n| ") == 1 + 3 * 6 * 4  # header + every (cooc, popular, category) triple of the space
    assert "2 held-out period(s) before the test one" in md and " users pooled" in md
    assert f"chosen {mix_text(chosen)}" in md and f"--default-mix {out / 'best_mix.txt'}" in result.output
    assert not (out / "work").exists() and not (out / "trials.json").exists()  # no search was run


def test_prepare_session_gap_option_and_preset(taobao: Path, tmp_path: Path) -> None:
    from offline.data.presets import preset

    assert preset("taobao").session_gap_s == 7 * 86_400 and preset("generic").session_gap_s == 7 * 86_400
    runner = CliRunner()
    out = tmp_path / "ds"
    result = runner.invoke(
        app,
        [
            "prepare",
            "--source",
            "taobao",
            "--input",
            str(TAOBAO),
            "--output",
            str(out),
            "--session-gap",
            "3600",
        ],
    )
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["session_gap_s"] == 3600
    weekly = json.loads((taobao / "manifest.json").read_text())
    assert weekly["config"]["session_gap_s"] == 7 * 86_400
    # one sequence per visit instead of one per user history: many more, shorter sequences
    assert manifest["counts"]["sequences"]["item"] > 2 * weekly["counts"]["sequences"]["item"]


@pytest.mark.parametrize("target", ["test", "valid"])
def test_held_out_dataset_is_the_validation_period_and_never_the_test(target: str, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    from offline.data.prepare import prepare_from_source
    from offline.evaluation.tune import held_out_dataset

    source = prepare_from_source("taobao", TAOBAO, tmp_path / "src", target=target)  # type: ignore[arg-type]
    valid = prepare_from_source("taobao", TAOBAO, tmp_path / "valid", target="valid")
    held = held_out_dataset(source, 3_600, tmp_path / "work")
    assert json.loads((held / "manifest.json").read_text())["config"]["session_gap_s"] == 3_600

    def period(root: Path, split: str) -> tuple[int, int, int]:
        ev = pq.read_table(root / "events.parquet").to_pandas()
        ts = ev.loc[ev["split"] == split, "timestamp"]
        return int(ts.min()), int(ts.max()), len(ts)

    # from a test dataset or from its validation dataset: the held-out part is the validation period
    assert period(held, "test") == period(valid, "test")
    assert period(held, "train") == period(valid, "train")


def test_held_out_periods_go_back_one_period_at_a_time_on_a_log_split_by_time(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    from offline.data.prepare import prepare_from_source
    from offline.data.presets import preset
    from offline.evaluation.tune import held_out_dataset, held_out_periods

    def parts(root: Path) -> dict[str, tuple[int, int]]:
        ev = pq.read_table(root / "events.parquet").to_pandas()
        return {str(s): (int(g.min()), int(g.max())) for s, g in ev.groupby("split")["timestamp"]}

    day = 86_400
    source = prepare_from_source("taobao", TAOBAO, tmp_path / "src")
    end = json.loads((source / "manifest.json").read_text())["split"]["end"]
    first, second = held_out_periods(source, 3_600, tmp_path / "work")
    # the last day is the test period, the day before it the validation one, the day before that the
    # second held-out period; each dataset trains on what precedes its held-out day, and none reads later
    for root, back in ((source, 0), (first, 1), (second, 2)):
        held_out, train = parts(root)["test"], parts(root)["train"]
        assert end - (back + 1) * day <= held_out[0] <= held_out[1] < end - back * day
        assert train[1] < end - (back + 1) * day
    assert json.loads((second / "manifest.json").read_text())["config"]["session_gap_s"] == 3_600

    # a log split per user has one held-out period
    movielens = prepare_from_source("movielens", MOVIELENS, tmp_path / "ml")
    assert len(held_out_periods(movielens, 3_600, tmp_path / "ml-work")) == 1
    with pytest.raises(ValueError, match="split by time"):
        held_out_dataset(movielens, 3_600, tmp_path / "ml-work", back=2)
    # 3-day periods in the sample's 9 days: the period before the validation one leaves no training part
    config = preset("taobao").replace(test_days=3.0)
    short = prepare_from_source("taobao", TAOBAO, tmp_path / "short", config=config)
    assert held_out_periods(short, 3_600, tmp_path / "short-work") == [
        tmp_path / "short-work" / "valid-gap3600"
    ]


def test_best_weights_prefer_hitrate_plus_recall_then_the_default_mix() -> None:
    # scores in eighths and sixteenths: their sums are exact
    rows = [
        {"cooc_weight": 0.25, "popular_weight": 0.35, "HitRate@50": 0.5, "Recall@50": 0.125},
        {"cooc_weight": 0.5, "popular_weight": 0.35, "HitRate@50": 0.375, "Recall@50": 0.125},
        {"cooc_weight": 0.75, "popular_weight": 0.35, "HitRate@50": 0.375, "Recall@50": 0.25},
        {"cooc_weight": 0.5, "popular_weight": 0.0, "HitRate@50": 0.5, "Recall@50": 0.125},
    ]
    # tied at 0.625: distances to the default (0.5, 0.35, no category channel) are 0.25, 0.25 and 0.35
    assert best_weights(rows) in ((0.25, 0.35, 0.0), (0.75, 0.35, 0.0))
    rows[1]["Recall@50"] = 0.25
    assert best_weights(rows) == (0.5, 0.35, 0.0)
    # more hits (0.4375 against 0.375) do not win when they cost more recall than they bring
    rows[3].update({"HitRate@50": 0.4375, "Recall@50": 0.0625})
    assert best_weights(rows) == (0.5, 0.35, 0.0)
    rows[3]["HitRate@50"] = 0.625
    assert best_weights(rows) == (0.5, 0.0, 0.0)
    # the category weight counts in the distance too: 0.25 away from the default
    rows.append(
        {"cooc_weight": 0.5, "popular_weight": 0.0, "category_popular_weight": 0.25, "HitRate@50": 0.625,
         "Recall@50": 0.0625}
    )  # fmt: skip
    assert best_weights(rows) == (0.5, 0.0, 0.0)
    rows[-1]["Recall@50"] = 0.125
    assert best_weights(rows) == (0.5, 0.0, 0.25)
    assert served_mix(0.5, 0.0, 0.25) == {"m2grl": 0.5, "cooc": 0.5, "category_popular": 0.25}
    assert mix_text({"m2grl": 0.75, "cooc": 0.25}) == "m2grl=0.75,cooc=0.25"
    assert parse_mix(mix_text({"m2grl": 0.75, "cooc": 0.25})) == {"m2grl": 0.75, "cooc": 0.25}


def test_pool_by_users_weights_each_period_by_its_users() -> None:
    periods = [
        {"HitRate@50": 0.2, "Recall@50": 0.1, "users": 100.0},
        {"HitRate@50": 0.6, "Recall@50": 0.3, "users": 300.0},
    ]
    # (0.2 * 100 + 0.6 * 300) / 400 = 0.5; (0.1 * 100 + 0.3 * 300) / 400 = 0.25
    assert pool_by_users(periods) == pytest.approx({"HitRate@50": 0.5, "Recall@50": 0.25, "users": 400.0})
    assert pool_by_users(periods[:1]) == pytest.approx(periods[0])


def test_weight_triples_leave_the_category_channel_out_without_a_side_view() -> None:
    space = TuneSpace(cooc_weights=(0.5,), popular_weights=(0.0, 0.35), category_popular_weights=(0.25, 0.75))
    assert weight_triples(space, categories=True) == [
        (0.5, 0.0, 0.25), (0.5, 0.0, 0.75), (0.5, 0.35, 0.25), (0.5, 0.35, 0.75)
    ]  # fmt: skip
    assert weight_triples(space, categories=False) == [(0.5, 0.0, 0.0), (0.5, 0.35, 0.0)]


@pytest.mark.parametrize("weights", [(), (0.0, 0.5), (0.5, 1.0)])
def test_tune_space_refuses_mixes_without_both_channels(weights: tuple[float, ...]) -> None:
    with pytest.raises(ValueError, match="cooc_weights"):
        TuneSpace(cooc_weights=weights)


@pytest.mark.parametrize("weights", [(), (-0.1,), (1.5,)])
@pytest.mark.parametrize("field", ["popular_weights", "category_popular_weights"])
def test_tune_space_refuses_channel_weights_outside_the_unit_interval(
    field: str, weights: tuple[float, ...]
) -> None:
    with pytest.raises(ValueError, match=field):
        TuneSpace(**{field: weights})


def test_the_default_served_row_serves_the_mix_chosen_on_the_validation_split(tmp_path: Path) -> None:
    from core.layout import DatasetLayout
    from offline.baselines.base import ItemModel
    from offline.data.prepare import prepare_from_source
    from offline.evaluation.config import ProtocolConfig
    from offline.evaluation.job import evaluate

    movielens = prepare_from_source("movielens", MOVIELENS, tmp_path / "movielens")
    fitted: list[tuple[str, int]] = []

    def random_m2grl(dataset_dir: Path, method: str, seed: int, workdir: Path) -> ItemModel:
        # a model without signal: which mix wins is then up to the channels, on the split it is fitted on
        fitted.append((json.loads((dataset_dir / "manifest.json").read_text())["target"], seed))
        n = len(np.load(DatasetLayout(dataset_dir).vocab("item")))
        rng = np.random.default_rng([seed, n])
        return ItemModel(vectors=rng.standard_normal((n, 8)).astype(np.float32), metric="ip")

    protocol = ProtocolConfig(ks=(50,))
    evaluate(movielens, tmp_path / "report", methods=["popularity"], seeds=(0,), protocol=protocol,
             m2grl_fit=random_m2grl, workdir=tmp_path / "models")  # fmt: skip
    # one model on the test dataset's train part, one on the validation split's: the mix is chosen there
    assert sorted(fitted) == [("test", 0), ("valid", 0)]
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    chosen = report["served_mixes"]["served-control"]["0"]
    assert f"served-control: seed 0 {chosen}" in (tmp_path / "report" / "report.md").read_text()
    # the served row is that mix served on the test split, as a fixed mix would be
    evaluate(movielens, tmp_path / "fixed", methods=["popularity"], seeds=(0,), protocol=protocol,
             m2grl_fit=random_m2grl, workdir=tmp_path / "models", served={"control": parse_mix(chosen)})  # fmt: skip
    fixed = json.loads((tmp_path / "fixed" / "report.json").read_text())
    assert fixed["methods"]["served-control"]["mean"] == report["methods"]["served-control"]["mean"]
    assert fixed["served_mixes"]["served-control"]["0"] == chosen


def test_the_served_row_of_a_log_split_by_time_chooses_its_mix_on_two_held_out_periods(
    taobao: Path, tmp_path: Path
) -> None:
    from core.layout import DatasetLayout
    from offline.baselines.base import ItemModel
    from offline.evaluation.config import ProtocolConfig
    from offline.evaluation.job import evaluate

    fitted: list[tuple[str, int, int]] = []

    def random_m2grl(dataset_dir: Path, method: str, seed: int, workdir: Path) -> ItemModel:
        manifest = json.loads((dataset_dir / "manifest.json").read_text())
        fitted.append((manifest["target"], manifest["time_range"][1], seed))
        n = len(np.load(DatasetLayout(dataset_dir).vocab("item")))
        return ItemModel(
            vectors=np.random.default_rng([seed, n]).standard_normal((n, 8)).astype(np.float32), metric="ip"
        )

    evaluate(taobao, tmp_path / "report", methods=["popularity"], seeds=(0,), protocol=ProtocolConfig(ks=(50,)),
             m2grl_fit=random_m2grl, workdir=tmp_path / "models")  # fmt: skip
    # the test dataset's model, then one per held-out period: the validation split (the whole log, its
    # last period dropped) and the period before it, from a log that ends a day earlier
    (test, test_end, _), (valid, valid_end, _), (earlier, earlier_end, _) = fitted
    assert (test, valid, earlier) == ("test", "valid", "valid")
    assert test_end == valid_end and earlier_end < valid_end - 12 * 3_600
