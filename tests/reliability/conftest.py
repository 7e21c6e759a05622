"""Fixtures of the reliability tests; the scenario drivers they use are in ``tests/reliability/scenarios.py``.

- ``base_root`` (session, read-only): an index root with several small versions, ``v1`` published;
  ``index_root``: a copy of it a test may publish to or corrupt;
- ``redis_process``: a redis-server a test may stop, kill and restart on the same port;
- ``client_for``: the in-process client factory of ``tests/app/conftest.py``.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.app.conftest import client_for as client_for  # noqa: F401 - the fixture, shared
from tests.reliability.scenarios import RedisProcess, build_root


@pytest.fixture(scope="session")
def base_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Read-only: copy it (``index_root``) before publishing or corrupting anything."""
    return build_root(tmp_path_factory.mktemp("reliability-index"))


@pytest.fixture
def index_root(base_root: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "index"
    shutil.copytree(base_root, dst)
    return dst


@pytest.fixture
def redis_process(tmp_path: Path) -> Iterator[RedisProcess]:
    server = RedisProcess(tmp_path / "redis")
    server.start()
    yield server
    server.stop()
