"""Shared fixtures of the model tests: tiny dataset folders in the DatasetLayout format."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.model.datasets import movielens_dataset, planted_dataset

ML_DIR = Path("/work/shared/data/ml-latest-small")
if not ML_DIR.exists():
    ML_DIR = Path(__file__).resolve().parents[2] / "data" / "movielens-small"


@pytest.fixture(scope="session")
def planted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """5 categories x 20 items; sequences browse category c then c + 1 (see ``planted_dataset``)."""
    return planted_dataset(tmp_path_factory.mktemp("planted") / "dataset")


@pytest.fixture(scope="session")
def movielens(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled MovieLens sample as a dataset folder (appendix A.1 preprocessing)."""
    return movielens_dataset(tmp_path_factory.mktemp("movielens") / "dataset", ML_DIR)
