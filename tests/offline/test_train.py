"""The train job (``offline/jobs/train.py``) end to end: dataset folder -> model folder; the artifact reader;
quality."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import offline.jobs.train
from core.layout import ModelLayout
from model.artifact import ArtifactError, M2GRLArtifact
from model.config import M2GRLConfig
from offline.jobs.train import train_m2grl
from tests.model.datasets import planted_dataset, random_rate, same_category_rate

FAST = {"threads": 1, "device": "cpu", "shared_negatives": 64}


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """5 categories x 20 items; sequences browse category c then c + 1 (see ``planted_dataset``)."""
    return planted_dataset(tmp_path_factory.mktemp("planted") / "dataset")


@pytest.fixture(scope="module")
def planted_model(planted: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("model") / "m2grl"
    return train_m2grl(planted, out, M2GRLConfig(epochs=3, batch_size=512, **FAST), progress=False)


def test_folder_follows_model_layout(planted_model: Path) -> None:
    layout = ModelLayout(planted_model)
    art = M2GRLArtifact.load(planted_model)
    assert art.views == ["item", "category"] and art.relation_names == ["item-category"]
    assert art.embeddings["item"].shape == (100, 128) and art.embeddings["category"].shape == (5, 128)
    assert art.context["item"].shape == (100, 128)
    rel = art.relational["item-category"]
    assert rel["item"].shape == (100, 128) and rel["category"].shape == (5, 128)
    # The relational embeddings are sigma(W e) of the stored embeddings.
    w = np.load(layout.relation_matrix("item-category"))
    expected = 1 / (1 + np.exp(-(art.embeddings["item"] @ w.T)))
    assert np.allclose(rel["item"], expected, atol=1e-5)
    assert art.attributes["category"].shape == (100,)
    weights = json.loads(layout.task_weights.read_text())
    assert set(weights) == {"intra:item", "intra:category", "inter:item-category"}
    assert all(w["weight"] <= 20.0 + 1e-4 for w in weights.values())
    assert (layout.plots / "training_curves.png").stat().st_size > 0
    assert (layout.plots / "pca_items.png").stat().st_size > 0
    manifest = art.manifest
    assert manifest.dataset_sha256 and manifest.config["window"] == 9
    assert set(manifest.model_extra["training"]["final_losses"]) >= {"intra:item", "inter:item-category"}
    assert not layout.checkpoints.exists()  # removed after a successful run


def test_planted_structure_is_learned(planted_model: Path) -> None:
    art = M2GRLArtifact.load(planted_model)
    labels = art.attributes["category"]
    assert same_category_rate(art.embeddings["item"], labels) > 0.9 > 3 * random_rate(labels)
    # Inter-view alignment: an item's relational vector scores its own category above the others.
    rel = art.relational["item-category"]
    scores = rel["item"] @ rel["category"].T
    cat_row = {int(c): r for r, c in enumerate(art.vocab["category"])}
    truth = np.array([cat_row[int(c)] for c in labels])
    assert (scores.argmax(axis=1) == truth).mean() > 0.9


def test_existing_output_needs_overwrite(planted: Path, planted_model: Path) -> None:
    with pytest.raises(FileExistsError):
        train_m2grl(planted, planted_model, M2GRLConfig(epochs=1, **FAST), progress=False)


def test_unknown_view_is_rejected(planted: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="views: \\['shop'\\] not in the dataset"):
        train_m2grl(planted, tmp_path / "m", M2GRLConfig(views=("item", "shop"), **FAST), progress=False)


def test_single_view_variant(planted: Path, tmp_path: Path) -> None:
    out = train_m2grl(planted, tmp_path / "m", M2GRLConfig(views=("item",), epochs=1, **FAST), progress=False)
    art = M2GRLArtifact.load(out)
    assert art.views == ["item"] and art.relations == [] and list(art.task_weights) == ["intra:item"]


def test_broken_folders_are_reported(planted_model: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(planted_model, broken)
    emb_path = ModelLayout(broken).embeddings("item")
    emb = np.load(emb_path)
    emb[3, 0] = np.nan
    np.save(emb_path, emb)
    with pytest.raises(ArtifactError, match="embeddings/item.npy holds NaN"):
        M2GRLArtifact.load(broken)
    np.save(emb_path, emb[:50])
    with pytest.raises(ArtifactError, match="50 rows"):
        M2GRLArtifact.load(broken)
    emb_path.unlink()
    with pytest.raises(ArtifactError, match="item.npy is missing"):
        M2GRLArtifact.load(broken)
    with pytest.raises(ArtifactError, match="manifest.json not found"):
        M2GRLArtifact.load(tmp_path)


def test_resume_after_a_crash_matches_a_clean_run(
    planted: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = M2GRLConfig(epochs=3, batch_size=1024, **FAST)
    clean = M2GRLArtifact.load(train_m2grl(planted, tmp_path / "clean", cfg, progress=False))

    real = offline.jobs.train.make_batch_fn

    def crashing(*args: Any, **kwargs: Any) -> Any:
        inner = real(*args, **kwargs)

        def batches(epoch: int) -> Any:
            if epoch == 2:
                raise RuntimeError("simulated crash in epoch 3")
            return inner(epoch)

        return batches

    out = tmp_path / "resumed"
    monkeypatch.setattr(offline.jobs.train, "make_batch_fn", crashing)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train_m2grl(planted, out, cfg, progress=False)
    assert not out.exists()
    assert sorted(p.name for p in ModelLayout(out).checkpoints.glob("*.pt")) == [
        "epoch-0001.pt",
        "epoch-0002.pt",
    ]
    monkeypatch.setattr(offline.jobs.train, "make_batch_fn", real)

    with pytest.raises(ValueError, match="cannot resume"):
        train_m2grl(planted, out, M2GRLConfig(epochs=3, batch_size=512, **FAST), resume=True, progress=False)
    resumed = M2GRLArtifact.load(train_m2grl(planted, out, cfg, resume=True, progress=False))
    assert resumed.manifest.model_extra["training"]["resumed_from"] == 2
    assert np.allclose(resumed.embeddings["item"], clean.embeddings["item"], atol=1e-6)
    assert np.allclose(
        resumed.relational["item-category"]["category"],
        clean.relational["item-category"]["category"],
        atol=1e-6,
    )


def test_concat_ragged_hand_computed() -> None:
    a = (np.array([0, 2, 3]), np.array([1, 2, 3]))
    b = (np.array([0, 1, 3]), np.array([4, 5, 6]))
    indptr, tokens = offline.jobs.train.concat_ragged(a, b)
    assert indptr.tolist() == [0, 2, 3, 4, 6] and tokens.tolist() == [1, 2, 3, 4, 5, 6]


def test_walks_are_appended_to_the_sequences_only_when_asked(planted: Path, tmp_path: Path) -> None:
    from offline.data.prepare import walks_path

    dataset = tmp_path / "ds"
    shutil.copytree(planted, dataset)
    views, relations = offline.jobs.train.dataset_views(dataset)
    plain = offline.jobs.train.load_inputs(dataset, views, relations)
    walk = walks_path(dataset, "item")
    walk.parent.mkdir(parents=True, exist_ok=True)
    np.savez(walk, indptr=np.array([0, 3, 5]), tokens=np.array([7, 8, 9, 1, 2], dtype=np.int32))
    with_walks = offline.jobs.train.load_inputs(dataset, views, relations)
    without = offline.jobs.train.load_inputs(dataset, views, relations, walks=False)
    n_seq = len(plain.sequences["item"][0]) - 1
    indptr, tokens = with_walks.sequences["item"]
    assert len(indptr) - 1 == n_seq + 2
    assert tokens[indptr[n_seq] :].tolist() == [7, 8, 9, 1, 2]
    assert np.array_equal(without.sequences["item"][1], plain.sequences["item"][1])
    assert np.array_equal(with_walks.sequences["category"][1], plain.sequences["category"][1])
    # the checksum covers what training reads
    assert offline.jobs.train.dataset_checksum(
        dataset, views, relations
    ) != offline.jobs.train.dataset_checksum(dataset, views, relations, walks=False)
