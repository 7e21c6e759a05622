"""``evaluate``: end to end on a tiny dataset folder, with a test double standing in for ServingIndex."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from offline.baselines.base import ItemModel
from offline.evaluation.config import ProtocolConfig
from offline.evaluation.job import evaluate
from tests.offline.eval_dataset import exact_factory, write_tiny_dataset


def _fake_m2grl(dataset_dir: Path, method: str, seed: int, workdir: Path) -> ItemModel:
    # One-hot category vectors: a perfect "model" for the tiny data (items of a category are neighbours).
    cats = np.load(dataset_dir / "attributes" / "category.npy")
    rng = np.random.default_rng(seed)
    v = np.eye(4, dtype=np.float32)[cats] + 0.01 * rng.random((len(cats), 4), dtype=np.float32)
    return ItemModel(vectors=v, metric="ip")


def test_evaluate_writes_tables(tmp_path: Path) -> None:
    ds = write_tiny_dataset(tmp_path / "ds")
    md = evaluate(
        ds,
        tmp_path / "report",
        methods=["m2grl", "m2grl-uniform", "m2grl-static", "m2grl-single-view", "popularity", "itemcf"],
        seeds=(0, 1),
        protocol=ProtocolConfig(ks=(2, 5, 10)),
        topn=10,
        retriever_factory=exact_factory,
        m2grl_fit=_fake_m2grl,
        served={},  # the served rows choose their mix on a validation split this tiny log cannot hold
    )
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    text = md.read_text()
    assert "Table 2 @5" in text and "Table 3" in text and "Single-view" in text
    m2 = report["methods"]["m2grl"]
    assert set(m2["seeds"]) == {"0", "1"}
    # Every user's 2 test items are in its train category: 5 same-category neighbours cover them all.
    assert m2["mean"]["Recall@5"] == pytest.approx(1.0)
    assert m2["mean"]["Precision@5"] == pytest.approx(2 / 5)
    assert report["methods"]["itemcf"]["mean"]["HitRate@5"] == pytest.approx(1.0)
    assert report["methods"]["popularity"]["std"]["HitRate@5"] == pytest.approx(0.0)
    assert report["users"] == 40
    # ... and the trigger is in that category too; the one-hot "model" only returns category-mates.
    assert report["truth_in_trigger_category"] == pytest.approx(1.0)
    assert m2["mean"]["TriggerCategoryShare@2"] == pytest.approx(1.0)
    assert "Ground-truth items in the category of the user's trigger: 100.0%" in text
    assert "TriggerCategoryShare@5" in text
    # long tail: users per train-count bucket, recounted here from the events
    assert "## Long tail @5: ground truth by its train count" in text
    events = pd.read_parquet(ds / "events.parquet")
    counts = events[events["split"] == "train"]["item_id"].value_counts()
    test = events[events["split"] == "test"]
    test_counts = test["item_id"].map(counts).fillna(0)
    for lo, hi, name in ((1, 2, "Freq1-2:"), (3, 10, "Freq3-10:"), (11, 10**9, "Freq11+:")):
        users = test.loc[test_counts.between(lo, hi), "user_id"].nunique()
        assert m2["mean"][f"{name}users"] == users
    assert m2["mean"]["Freq3-10:Recall@5"] == pytest.approx(1.0)  # the one-hot model finds every test item
    # the pictures of every metric against K, embedded in the report
    for name in ("report-hitrate-at-k.png", "report-recall-at-k.png"):
        assert f"]({name})" in text
        picture = (tmp_path / "report" / name).read_bytes()
        assert picture.startswith(b"\x89PNG") and len(picture) > 10_000  # a drawn figure, not an empty one


def test_evaluate_rejects_bad_arguments(tmp_path: Path) -> None:
    ds = write_tiny_dataset(tmp_path / "ds")
    with pytest.raises(ValueError, match="unknown methods.*valid"):
        evaluate(ds, tmp_path / "r", methods=["nope"], retriever_factory=exact_factory)
    with pytest.raises(ValueError, match="topn"):
        evaluate(ds, tmp_path / "r", methods=["itemcf"], topn=10, retriever_factory=exact_factory)
    with pytest.raises(FileNotFoundError, match="prepared dataset"):
        evaluate(tmp_path / "missing", tmp_path / "r", methods=["itemcf"], retriever_factory=exact_factory)


def test_diversity_table_uses_the_reports_protocol(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import offline.evaluation.job as job

    seen: dict[str, object] = {}

    def fake_diversity(dataset_dir, model_dirs, workdir, data, *, config, topn):  # type: ignore[no-untyped-def]
        seen["config"] = config
        return {"summary": {"general": {"HitRate@50": [0.5, 0.0]}}, "seeds": {}, "fit_seconds": []}

    monkeypatch.setattr(job, "evaluate_diversity", fake_diversity)
    ds = write_tiny_dataset(tmp_path / "ds")
    evaluate(
        ds,
        tmp_path / "report",
        methods=["m2grl"],
        seeds=(0,),
        protocol=ProtocolConfig(ks=(2, 5, 10), exclude_seen=True),
        topn=10,
        retriever_factory=exact_factory,
        m2grl_fit=_fake_m2grl,
        diversity=True,
        served={},
    )
    config = seen["config"]
    assert isinstance(config, ProtocolConfig) and config.exclude_seen and config.ks == (50,)


def test_a_given_model_serves_m2grl_and_its_norm_exponent_rows_without_training(tmp_path: Path) -> None:
    from core.atomic import atomic_write_json
    from core.layout import ModelLayout

    ds = write_tiny_dataset(tmp_path / "ds")
    layout = ModelLayout(tmp_path / "model")
    layout.embeddings("item").parent.mkdir(parents=True)
    cats = np.load(ds / "attributes" / "category.npy")
    # one-hot category vectors, item 0's scaled up: its length only matters to the inner product
    vectors = np.eye(4, dtype=np.float32)[cats] * np.linspace(1.0, 3.0, len(cats), dtype=np.float32)[:, None]
    np.save(layout.embeddings("item"), vectors)
    atomic_write_json(layout.manifest, {"views": ["item", "category"], "config": {"norm_exponent": 1.0}})

    def no_training(*args: object) -> ItemModel:
        raise AssertionError("a variant served from the given model must not train")

    norms: list[np.ndarray] = []

    def recording_factory(items, attributes, model, topn):  # type: ignore[no-untyped-def]
        norms.append(np.linalg.norm(model.vectors, axis=1))
        return exact_factory(items, attributes, model, topn)

    evaluate(
        ds,
        tmp_path / "report",
        methods=["m2grl", "m2grl-ip", "m2grl-norm0.75"],
        seeds=(0, 1),
        model_dir=layout.root,
        protocol=ProtocolConfig(ks=(2, 5, 10)),
        topn=10,
        retriever_factory=recording_factory,
        m2grl_fit=no_training,
        served={"fixed": {"m2grl": 0.5, "cooc": 0.5}},
    )
    scale = np.linalg.norm(vectors, axis=1)
    # the model's own exponent (1: unit rows), then 0 (raw), then 0.75 (length scale ** 0.25)
    np.testing.assert_allclose(norms[0], 1.0, rtol=1e-6)
    np.testing.assert_allclose(norms[1], scale, rtol=1e-6)
    np.testing.assert_allclose(norms[2], scale**0.25, rtol=1e-5)
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    for method in ("m2grl", "m2grl-ip", "m2grl-norm0.75"):
        assert set(report["methods"][method]["seeds"]) == {"0"}
        # every scaling keeps a category's items together, so each finds the user's test items
        assert report["methods"][method]["mean"]["Recall@5"] == pytest.approx(1.0)


def test_served_rows_score_the_mix_through_the_serving_index(tmp_path: Path) -> None:
    ds = write_tiny_dataset(tmp_path / "ds")
    served = {"blend": {"m2grl": 0.5, "cooc": 0.5}, "solo": {"m2grl": 1.0}, "cooc-only": {"cooc": 1.0}}
    evaluate(
        ds,
        tmp_path / "report",
        methods=["m2grl", "itemcf"],
        seeds=(0, 1),
        protocol=ProtocolConfig(ks=(2, 5, 10)),
        topn=10,
        m2grl_fit=_fake_m2grl,
        served=served,
    )
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    methods = report["methods"]
    # table 2: after the M2GRL rows, before the baselines, in the declared order
    table = (tmp_path / "report" / "report.md").read_text().split("## Table 2")[1]
    rows = [line.split("|")[1].strip() for line in table.splitlines() if line.startswith("| ")][1:6]
    assert rows == ["m2grl", "served-blend", "served-solo", "served-cooc-only", "itemcf"]
    for key in ("HitRate@5", "Recall@10", "NDCG@10"):
        # one channel served is the single method: the same lists through the same index
        assert methods["served-solo"]["mean"][key] == pytest.approx(methods["m2grl"]["mean"][key])
        assert methods["served-cooc-only"]["mean"][key] == pytest.approx(methods["itemcf"]["mean"][key])
    assert set(methods["served-blend"]["seeds"]) == {"0", "1"}
    # the paired table: the first served row minus every other row, user by user at the largest K
    paired = report["paired"]
    assert paired["reference"] == "served-blend" and paired["k"] == 10
    assert list(paired["rows"]) == ["itemcf", "m2grl", "served-cooc-only", "served-solo"]  # JSON sorts
    for method, row in paired["rows"].items():
        for key in ("HitRate@10", "Recall@10"):
            gap = methods["served-blend"]["mean"][key] - methods[method]["mean"][key]
            assert row[key][0] == pytest.approx(gap)  # the mean of per-user differences is the gap
            assert row[key][1] >= 0.0
    text = (tmp_path / "report" / "report.md").read_text()
    section = text.split("## served-blend against each method @10, user by user")[1].split("##")[0]
    listed = [line.split("|")[1].strip() for line in section.splitlines() if line.startswith("| ")][1:]
    assert listed == ["m2grl", "served-solo", "served-cooc-only", "itemcf"]  # the run's order
    with pytest.raises(ValueError, match="unknown channel"):
        evaluate(ds, tmp_path / "r2", methods=["itemcf"], served={"x": {"bm25": 1.0}})


def test_a_trained_model_is_reused_for_the_same_config_and_inputs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import offline.evaluation.job as job
    from core.atomic import atomic_write_json
    from core.layout import ModelLayout

    ds = write_tiny_dataset(tmp_path / "ds")
    trained: list[Path] = []
    inputs = {"sha": "inputs-1"}

    def fake_train(dataset_dir: Path, out: Path, config: object, **kwargs: object) -> Path:
        layout = ModelLayout(out)
        layout.embeddings("item").parent.mkdir(parents=True, exist_ok=True)
        np.save(layout.embeddings("item"), np.eye(4, dtype=np.float32))
        atomic_write_json(layout.manifest, {"config": config.to_dict(), "dataset_sha256": inputs["sha"]})  # type: ignore[attr-defined]
        trained.append(out)
        return out

    monkeypatch.setattr(job, "train_m2grl", fake_train)
    monkeypatch.setattr(job, "m2grl_inputs", lambda dataset_dir, config: inputs["sha"])
    for _ in range(2):  # a second protocol on the same data: read, not trained again
        job.m2grl_fitter(ds, "m2grl", 0, tmp_path / "models")
    assert len(trained) == 1
    inputs["sha"] = "inputs-2"  # the dataset changed: trained again
    job.m2grl_fitter(ds, "m2grl", 0, tmp_path / "models")
    assert len(trained) == 2
    # another config is another model: trained again
    monkeypatch.setattr(job, "M2GRL_VARIANTS", {**job.M2GRL_VARIANTS, "m2grl": {"window": 3}})
    job.m2grl_fitter(ds, "m2grl", 0, tmp_path / "models")
    assert len(trained) == 3


def test_the_paired_table_says_which_side_of_zero_the_interval_lies() -> None:
    from offline.evaluation.report import render_markdown

    results = {
        "dataset": "d",
        "protocol_text": "p",
        "protocol": {"ks": [50]},
        "users": 3,
        "discovery_users": 0,
        "catalogue": 9,
        "methods": {},
        "paired": {
            "reference": "served-control",
            "k": 50,
            "rows": {
                "pop": {"HitRate@50": [0.02, 0.01], "Recall@50": [-0.005, 0.01]},
                "cf": {"HitRate@50": [-0.03, 0.02], "Recall@50": [0.01, 0.01]},
            },
        },
    }
    text = render_markdown(results)
    assert "## served-control against each method @50, user by user" in text
    assert "| cf | -3.00 ± 2.00 (behind) | +1.00 ± 1.00 (within noise) |" in text
    assert "| pop | +2.00 ± 1.00 (ahead) | -0.50 ± 1.00 (within noise) |" in text
    assert "against each method" not in render_markdown(
        {**results, "paired": {**results["paired"], "rows": {}}}
    )
