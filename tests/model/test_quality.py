"""Quality end to end: MovieLens neighbours share genres; torchrun with 2 CPU processes matches one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from model.artifact import M2GRLArtifact
from model.config import M2GRLConfig
from offline.train import train_m2grl
from tests.model.test_train_job import random_rate, same_category_rate

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_movielens_item_neighbours_share_the_genre(movielens: Path, tmp_path: Path) -> None:
    cfg = M2GRLConfig(epochs=2, batch_size=8192, threads=1, device="cpu")
    art = M2GRLArtifact.load(train_m2grl(movielens, tmp_path / "m", cfg, progress=False))
    genre = art.attributes["category"]
    counts = art.manifest["counts"]["vocab"]
    assert counts["item"] > 8000 and counts["category"] >= 15
    same, chance = same_category_rate(art.embeddings["item"], genre), random_rate(genre)
    assert same > 0.5 and same > 2.5 * chance, (same, chance)


@pytest.mark.slow
def test_torchrun_two_cpu_processes_match_single_process_quality(planted: Path, tmp_path: Path) -> None:
    out = tmp_path / "dist"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    cmd = [
        str(Path(sys.executable).with_name("torchrun")),
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "cli.main",
        "train",
        "--dataset",
        str(planted),
        "--output",
        str(out),
        "--epochs",
        "3",
        "--batch-size",
        "256",
        "--device",
        "cpu",
    ]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    dist = M2GRLArtifact.load(out)
    assert dist.manifest["training"]["world_size"] == 2
    single = M2GRLArtifact.load(
        train_m2grl(
            planted,
            tmp_path / "single",
            M2GRLConfig(epochs=3, batch_size=512, threads=1, device="cpu"),
            progress=False,
        )
    )
    labels = dist.attributes["category"]
    q_dist = same_category_rate(dist.embeddings["item"], labels)
    q_single = same_category_rate(single.embeddings["item"], labels)
    assert q_dist > 0.9 and q_dist >= q_single - 0.05, (q_dist, q_single)
    # Each rank saw about half of the pairs.
    assert dist.manifest["training"]["pairs_per_rank"] < 0.6 * single.manifest["training"]["pairs_per_rank"]
