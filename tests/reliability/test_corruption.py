"""Corrupted or partial artifacts: broken index versions and model folders are refused.

Service side: ``tests/index/test_publish.py`` already proves ``ServingIndex.load`` / ``publish`` refuse
every corruption, and ``tests/app/test_reload.py`` that the service refuses a truncated FAISS file and a
missing marker (409, failure counter). Added here: the same five cases through the service's reload
(wrong dimension, NaN embeddings and an id map that does not match the index included, each also
re-hashed so the deeper check refuses it rather than the checksum), each with its ERROR log line, the
``m2grl_index_reloads_total{result="failure"}`` increment and the old version still serving its own
answers; and the poller refusing a broken version once, without retrying it.

Offline side: ``m2grl train`` on a dataset with a truncated or missing sequences file or no manifest,
``m2grl build-index`` on a model folder with NaN embeddings or without its manifest (the manifest is
the completion marker of a model folder: written last, inside the atomic folder write) or a metric
folder without one: one ``error:`` line, nonzero exit, no traceback.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from core.atomic import atomic_write_bytes
from core.layout import DatasetLayout, IndexRoot, ModelLayout
from offline.data.prepare import prepare_from_source
from tests.app.conftest import make_settings, vectors_for, write_model_and_metric
from tests.reliability.scenarios import (
    TRIGGERS,
    assert_clean_failure,
    corrupt,
    known_answers,
    m2grl,
    metric_sample,
)

REPO = Path(__file__).resolve().parents[2]

#: (kind, re-hashed, what the refusal says)
CASES = [
    ("missing_marker", False, "_COMPLETE"),
    ("wrong_dimension", True, "has dimension 9, the manifest says 8"),
    ("nan_embeddings", True, "NaN"),
    ("truncated_index", False, "truncated or replaced"),
    ("truncated_index", True, "unreadable (truncated?)"),
    ("id_map_mismatch", False, "items.npy has"),
    ("id_map_mismatch", True, "items.npy has shape (59,), expected (60,)"),
]


def point_current_at(root: Path, version: str) -> None:
    """Move CURRENT without validating (what a broken publisher could do)."""
    atomic_write_bytes(IndexRoot(root).current, f"{version}\n".encode())


@pytest.mark.parametrize(("kind", "rehashed", "message"), CASES)
def test_reload_refuses_a_broken_version_and_keeps_serving(
    index_root: Path,
    client_for: Callable[..., TestClient],
    caplog: pytest.LogCaptureFixture,
    kind: str,
    rehashed: bool,
    message: str,
) -> None:
    client = client_for(make_settings(index_root, admin_token="s3cret"))
    v1 = known_answers(index_root, "v1")
    corrupt(index_root, "v2", "bad", kind, rehashed=rehashed)
    point_current_at(index_root, "bad")
    caplog.set_level(logging.ERROR, logger="m2grl.reload")

    r = client.post("/admin/reload", headers={"Authorization": "Bearer s3cret"})

    assert r.status_code == 409
    body = r.json()
    assert body["result"] == "failure" and body["previous"] == "v1" and message in body["detail"]
    lines = [rec.getMessage() for rec in caplog.records if rec.name == "m2grl.reload"]
    assert len(lines) == 1 and "refused" in lines[0] and "bad" in lines[0] and message in lines[0]
    text = client.get("/metrics").text
    assert metric_sample(text, "m2grl_index_reloads_total", result="failure") == 1
    assert metric_sample(text, "m2grl_index_info", version="v1") == 1
    for trigger in TRIGGERS[:4]:
        answer = client.get(f"/i2i/{trigger}?k=8").json()
        assert answer["index_version"] == "v1"
        assert [c["item_id"] for c in answer["candidates"]] == v1[trigger]
    ready = client.get("/readyz")
    assert ready.status_code == 200 and message in ready.json()["last_error"]


def test_poller_refuses_a_broken_version_once(
    index_root: Path, client_for: Callable[..., TestClient], caplog: pytest.LogCaptureFixture
) -> None:
    client = client_for(make_settings(index_root, reload_poll_s=0.05))
    caplog.set_level(logging.ERROR, logger="m2grl.reload")
    corrupt(index_root, "v2", "bad", "nan_embeddings", rehashed=True)
    point_current_at(index_root, "bad")
    deadline = time.monotonic() + 10
    while metric_sample(client.get("/metrics").text, "m2grl_index_reloads_total", result="failure") < 1:
        assert time.monotonic() < deadline, "the poller never tried the new version"
        time.sleep(0.05)
    time.sleep(0.5)  # ten more polls: the refused version is not retried until CURRENT changes
    assert metric_sample(client.get("/metrics").text, "m2grl_index_reloads_total", result="failure") == 1
    assert len([r for r in caplog.records if "refused" in r.getMessage()]) == 1
    assert client.get(f"/i2i/{TRIGGERS[0]}").json()["index_version"] == "v1"


# ------------------------------------------------------------------------------------- offline jobs


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled MovieLens sample prepared with the item view only (fast to train on)."""
    out = tmp_path_factory.mktemp("dataset") / "ml"
    return prepare_from_source("movielens", REPO / "data" / "movielens-small", out, views=("item",))


@pytest.mark.slow
@pytest.mark.parametrize(
    ("breakage", "fragments"),
    [
        ("truncated_sequences", ("sequences/item.npz", "unreadable")),
        ("missing_sequences", ("sequences/item.npz", "not found")),
        ("missing_manifest", ("manifest.json", "not found")),
    ],
)
def test_train_refuses_a_broken_dataset(
    dataset: Path, tmp_path: Path, breakage: str, fragments: tuple[str, ...]
) -> None:
    broken = tmp_path / "dataset"
    shutil.copytree(dataset, broken)
    layout = DatasetLayout(broken)
    if breakage == "truncated_sequences":
        data = layout.sequences("item").read_bytes()
        layout.sequences("item").write_bytes(data[: len(data) // 2])
    elif breakage == "missing_sequences":
        layout.sequences("item").unlink()
    else:
        layout.manifest.unlink()
    out = tmp_path / "model"
    result = m2grl(
        "train", "--dataset", str(broken), "--output", str(out), "--epochs", "1", "--device", "cpu"
    )
    assert_clean_failure(result, *fragments)
    assert not out.exists()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("breakage", "fragments"),
    [
        ("nan_embeddings", ("embeddings/item.npy", "NaN")),
        ("missing_model_manifest", ("manifest.json", "not a complete model folder")),
        ("missing_metric_manifest", ("manifest.json", "not a complete metric model folder")),
    ],
)
def test_build_index_refuses_a_broken_model(
    tmp_path: Path, breakage: str, fragments: tuple[str, ...]
) -> None:
    model_dir, metric_dir = write_model_and_metric(tmp_path, vectors_for(3))
    model = ModelLayout(model_dir)
    if breakage == "nan_embeddings":
        vectors = np.load(model.embeddings("item"))
        vectors[7, 2] = np.nan
        np.save(model.embeddings("item"), vectors)
    elif breakage == "missing_model_manifest":
        model.manifest.unlink()
    else:
        (metric_dir / "manifest.json").unlink()
    root = tmp_path / "index"
    result = m2grl(
        "build-index", "--model", str(model_dir), "--metric", str(metric_dir), "--index-root", str(root),
        "--index-type", "flat", "--topn", "50", "--device", "cpu",
    )  # fmt: skip
    assert_clean_failure(result, *fragments)
    assert not IndexRoot(root).current.exists()
    assert not IndexRoot(root).versions.exists() or not any(IndexRoot(root).versions.iterdir())
