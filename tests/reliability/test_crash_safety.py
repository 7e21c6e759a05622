"""Crash safety: ``kill -9`` of the offline jobs at random points.

``m2grl prepare`` (bundled MovieLens sample, item view), ``m2grl train`` (small settings) and
``m2grl build-index`` run as CLI subprocesses and are SIGKILLed after seeded random delays, or at seeded
points after their output folder started being written (its temporary sibling exists) or after the
first training checkpoint. After every kill no
half-written artifact may be visible as complete: the output folder does not exist, or it is complete
(manifest or completion marker) and loads; every visible index version and training checkpoint loads.
Then a rerun (``train --resume``) finishes and its artifact loads; the resumed training continued from
a checkpoint of the killed runs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from core.atomic import read_json
from core.layout import IndexRoot, ModelLayout
from index.publish import current_version, list_versions
from index.serving import ServingIndex
from model.artifact import M2GRLArtifact
from offline.jobs.train import dataset_views, load_inputs
from tests.reliability.scenarios import REPO, cli_env, m2grl_command

pytestmark = pytest.mark.slow

SEEDS = (0, 1, 2)
PREPARE = ("prepare", "--source", "movielens", "--input", str(REPO / "data" / "movielens-small"),
           "--views", "item", "--overwrite")  # fmt: skip
TRAIN = ("train", "--epochs", "4", "--dim", "8", "--window", "2", "--negatives", "2", "--device", "cpu")


def killed(
    args: tuple[str, ...],
    log: Path,
    *,
    delay_s: float | None = None,
    when: Callable[[], bool] | None = None,
    extra_s: float = 0.0,
    timeout_s: float = 180.0,
) -> bool:
    """Run the CLI with ``args`` and SIGKILL it after ``delay_s``, or ``extra_s`` after ``when()`` first
    holds. Returns whether it was still running when killed (False: it had finished)."""
    with open(log, "ab") as out:
        proc = subprocess.Popen(m2grl_command(*args), cwd=REPO, env=cli_env(), stdout=out, stderr=out,
                                start_new_session=True)  # fmt: skip
        start = time.monotonic()
        while proc.poll() is None:
            if delay_s is not None and time.monotonic() - start >= delay_s:
                break
            if when is not None and when():
                time.sleep(extra_s)
                break
            assert time.monotonic() - start < timeout_s, (
                f"{args[0]} neither finished nor reached the kill point"
            )
            time.sleep(0.005)
        running = proc.poll() is None
        if running:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    return running


def run(args: tuple[str, ...], log: Path) -> None:
    with open(log, "ab") as out:
        result = subprocess.run(m2grl_command(*args), cwd=REPO, env=cli_env(), stdout=out, stderr=out,
                                timeout=300)  # fmt: skip
    assert result.returncode == 0, f"{args[0]} failed after the kills: {log.read_text()[-3000:]}"


def writing(parent: Path, name: str) -> Callable[[], bool]:
    """True while ``core.atomic.atomic_dir`` builds ``parent/name`` (its temporary sibling exists)."""
    return lambda: parent.is_dir() and any(parent.glob(f".tmp-{name}-*"))


def visible(parent: Path) -> list[Path]:
    """Entries of ``parent`` a reader could take for an artifact (temporary ones are hidden)."""
    return [p for p in parent.iterdir() if not p.name.startswith(".")] if parent.is_dir() else []


def check_dataset(out: Path) -> bool:
    """The dataset folder is absent, or complete and loadable. Returns whether it exists."""
    assert [p.name for p in visible(out.parent)] in ([], [out.name])
    if not out.exists():
        return False
    views, relations = dataset_views(out)
    inputs = load_inputs(out, views, relations)
    assert len(inputs.sequences["item"][0]) > 1
    return True


def check_model(out: Path) -> bool:
    """The model folder is absent, or complete and loadable; every visible checkpoint loads."""
    import torch

    assert [p.name for p in visible(out.parent)] in ([], [out.name])
    for ckpt in sorted(ModelLayout(out).checkpoints.glob("epoch-*.pt")):
        assert "model" in torch.load(ckpt, map_location="cpu", weights_only=False), ckpt
    if not out.exists():
        return False
    artifact = M2GRLArtifact.load(out)
    assert artifact.embeddings["item"].shape[1] == 8  # --dim 8
    return True


def check_index_root(root: Path) -> int:
    """Every visible version folder is complete and loads (full checksums), CURRENT names one of them
    or nothing. Returns the number of complete versions."""
    index_root = IndexRoot(root)
    names = [p.name for p in visible(index_root.versions)]
    assert sorted(names) == sorted(list_versions(root)), f"incomplete version visible: {names}"
    for name in names:
        ServingIndex.load(index_root.version(name).root, full_checksums=True).close()
    current = current_version(root)
    assert current is None or current in names
    return len(names)


def test_kill_9_at_random_points_leaves_no_half_artifact_and_reruns_finish(tmp_path: Path) -> None:
    rng = np.random.default_rng(20240601)
    log = tmp_path / "jobs.log"
    interrupted: dict[str, int] = {"prepare": 0, "train": 0, "build-index": 0}

    # prepare: seeded delays, then once while the folder is written; rerun
    dataset = tmp_path / "data" / "dataset"
    args = (*PREPARE, "--output", str(dataset))
    for _ in SEEDS:
        interrupted["prepare"] += killed(args, log, delay_s=float(rng.uniform(0.3, 2.0)))
        check_dataset(dataset)
    interrupted["prepare"] += killed(args, log, when=writing(dataset.parent, dataset.name),
                                     extra_s=float(rng.uniform(0.0, 0.2)))  # fmt: skip
    check_dataset(dataset)
    run(args, log)
    assert check_dataset(dataset)

    # train: killed fresh, then resumed and killed just after its first checkpoint (mid-training), then
    # resumed and killed while writing the model folder; the last resume finishes
    model = tmp_path / "models" / "model"
    args = (*TRAIN, "--dataset", str(dataset), "--output", str(model))
    checkpoints = ModelLayout(model).checkpoints
    interrupted["train"] += killed(args, log, delay_s=float(rng.uniform(1.0, 3.0)))
    assert not check_model(model)
    interrupted["train"] += killed((*args, "--resume"), log, when=lambda: any(checkpoints.glob("epoch-*.pt")),
                                   extra_s=float(rng.uniform(0.0, 0.3)))  # fmt: skip
    assert not check_model(model), "the job finished before its kill point: give it more epochs"
    interrupted["train"] += killed((*args, "--resume"), log, when=writing(model.parent, model.name),
                                   extra_s=float(rng.uniform(0.0, 0.2)))  # fmt: skip
    if not check_model(model):
        run((*args, "--resume"), log)
    assert check_model(model)
    assert read_json(ModelLayout(model).manifest)["training"]["resumed_from"] is not None

    # build-index: a seeded delay, then at seeded points of the version folder's write; rerun publishes
    root = tmp_path / "index"
    args = ("build-index", "--model", str(model), "--index-root", str(root), "--index-type", "flat",
            "--topn", "50", "--device", "cpu")  # fmt: skip
    interrupted["build-index"] += killed(args, log, delay_s=float(rng.uniform(0.3, 1.5)))
    check_index_root(root)
    for _ in SEEDS:
        interrupted["build-index"] += killed(args, log, when=writing(IndexRoot(root).versions, "*"),
                                             extra_s=float(rng.uniform(0.0, 0.25)))  # fmt: skip
        check_index_root(root)
    before = check_index_root(root)
    run(args, log)
    assert check_index_root(root) == before + 1
    served = ServingIndex.load(IndexRoot(root).version(str(current_version(root))).root, full_checksums=True)
    # every trained item, plus the catalogue's items without behaviour (placed from the model's mean)
    assert served.num_items - served.num_cold == len(M2GRLArtifact.load(model).vocab["item"])
    assert served.num_cold > 0

    # the kills hit running jobs (not only finished ones), so the checks above mean something
    assert interrupted["prepare"] >= 2 and interrupted["train"] >= 2 and interrupted["build-index"] >= 2, (
        interrupted
    )
