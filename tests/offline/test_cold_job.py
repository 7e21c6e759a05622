"""``evaluate_cold`` end to end: a hand-built log and model where the cold rule's answer is known."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from core.layout import DatasetLayout
from core.manifests import ModelManifest
from model.artifact import M2GRLArtifact
from offline.data.config import PrepareConfig
from offline.data.prepare import prepare_dataset
from offline.evaluation.cold_job import evaluate_cold, main
from offline.evaluation.config import ProtocolConfig

DAY = 86_400
# category 0: items 10..13 warm, 14 cold; category 1: items 20..23 warm, 24 cold
WARM = {0: [10, 11, 12, 13], 1: [20, 21, 22, 23]}
# unit directions of a category's items are symmetric around (1, 0) (category 1: around (-1, 0)), so the
# category's mean unit vector is (1, 0): 11.3 degrees from the trigger 13 = (1, -0.2), closer than any
# warm item (12 at 22.6, 11 at 33.7, 10 at 56.3 degrees)
SHAPES = {10: (1.0, 1.0), 11: (1.0, -1.0), 12: (1.0, 0.2), 13: (1.0, -0.2)}


def log() -> pa.Table:
    """Eight users; each reads its category's warm items in order (hours apart, day 0), then its cold
    item on the last day (the test period)."""
    rows = []
    for user in range(8):
        cat = user % 2
        rows += [(user, item, i * 3600, cat) for i, item in enumerate(WARM[cat])]
        rows.append((user, 14 + 10 * cat, 3 * DAY + 3600, cat))
    users, items, stamps, cats = (list(c) for c in zip(*rows, strict=True))
    return pa.table(
        {
            "user_id": pa.array(users, pa.int64()),
            "item_id": pa.array(items, pa.int64()),
            "timestamp": pa.array(stamps, pa.int64()),
            "behavior": pa.array(["view"] * len(rows)),
            "category_id": pa.array(cats, pa.int64()),
        }
    )


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("cold")
    config = PrepareConfig(time_window=(0, 4 * DAY), split="global_time", test_days=1.0)
    dataset = DatasetLayout(prepare_dataset(log(), root / "dataset", config))
    vocab = np.load(dataset.vocab("item"))
    cat_vocab = np.load(dataset.vocab("category"))
    vectors = np.array(
        [SHAPES[i] if i < 20 else tuple(-x for x in SHAPES[i - 10]) for i in vocab.tolist()], dtype=np.float32
    )
    side = np.eye(2, dtype=np.float32)[np.argsort(cat_vocab)]
    model = M2GRLArtifact(
        views=["item", "category"],
        relations=[("item", "category")],
        embeddings={"item": vectors, "category": side},
        context={"item": vectors, "category": side},
        relation_matrices={"item-category": np.eye(2, dtype=np.float32)},
        relational={"item-category": {"item": vectors, "category": side}},
        vocab={"item": vocab, "category": cat_vocab},
        attributes={"category": np.load(dataset.attributes("category"))},
        manifest=ModelManifest(views=["item"], config={"norm_exponent": 1.0}),
    )
    model.save(root / "model")
    return dataset.root, root / "model"


def test_cold_rule_finds_the_cold_item_and_baselines_do_not(folders: tuple[Path, Path]) -> None:
    dataset, model = folders
    methods = ["m2grl-group-mean", "m2grl-side-ridge", "m2grl-warm-only", "popularity-in-category"]
    report = evaluate_cold(dataset, model, methods, protocol=ProtocolConfig(ks=(1, 4)), topn=5)
    assert report["catalogue"] == {"warm": 8, "cold": 2}
    assert report["users"] == {"cold": 8, "all": 8}  # every test item is cold
    scores = {m: report["methods"][m]["mean"] for m in methods}
    assert scores["m2grl-group-mean"]["cold"]["HitRate@1"] == 1.0
    assert report["methods"]["m2grl-group-mean"]["notes"] == {"matched": [0, 2]}
    # one side vector per category: least squares maps it to the category's mean unit vector too
    assert scores["m2grl-side-ridge"]["cold"]["HitRate@1"] == 1.0
    assert scores["m2grl-warm-only"]["cold"]["HitRate@4"] == 0.0
    assert scores["m2grl-warm-only"]["lists"]["ColdShare@4"] == 0.0
    # the three other warm items of the category come first; the cold one fourth
    assert scores["popularity-in-category"]["cold"]["HitRate@1"] == 0.0
    assert scores["popularity-in-category"]["cold"]["HitRate@4"] == 1.0
    assert scores["popularity-in-category"]["lists"]["ColdShare@4"] == 0.25


def test_seeded_methods_and_the_shell_entry(folders: tuple[Path, Path], tmp_path: Path) -> None:
    dataset, model = folders
    report = evaluate_cold(
        dataset,
        model,
        ["random-in-category", "eges-cold"],
        seeds=(0, 1),
        protocol=ProtocolConfig(ks=(4,)),
        topn=5,
    )
    for method in ("random-in-category", "eges-cold"):
        assert sorted(report["methods"][method]["seeds"]) == [0, 1]
        assert 0.0 <= report["methods"][method]["mean"]["cold"]["HitRate@4"] <= 1.0
    # a category of four other items (three warm, one cold) fills the top 4 of random-in-category
    assert report["methods"]["random-in-category"]["mean"]["cold"]["HitRate@4"] == 1.0
    argv = ["--dataset", str(dataset), "--model", str(model), "--output", str(tmp_path / "r")]
    assert main([*argv, "--methods", "m2grl-group-mean", "--ks", "1,4", "--topn", "5"]) == 0
    text = (tmp_path / "r" / "cold.md").read_text()
    assert "| m2grl-group-mean | 100.00 | 100.00 |" in text and (tmp_path / "r" / "cold.json").exists()


def test_errors(folders: tuple[Path, Path], tmp_path: Path) -> None:
    dataset, model = folders
    with pytest.raises(ValueError, match="unknown cold methods \\['knn'\\]"):
        evaluate_cold(dataset, model, ["knn"])
    with pytest.raises(ValueError, match="topn \\(5\\) must be >= the largest K \\(100\\)"):
        evaluate_cold(dataset, model, ["m2grl-group-mean"], topn=5)
    bare = tmp_path / "bare"
    bare.mkdir()
    for item in dataset.iterdir():
        if item.name != "catalogue.parquet":
            (bare / item.name).symlink_to(item)
    with pytest.raises(ValueError, match="catalogue.parquet is missing: prepare the dataset again"):
        evaluate_cold(bare, model, ["m2grl-group-mean"], protocol=ProtocolConfig(ks=(1,)), topn=5)
