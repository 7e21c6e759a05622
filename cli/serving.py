"""Start the service with uvicorn (used by ``m2grl serve`` and ``m2grl demo``)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def run_server(
    *, index_root: Path, host: str, port: int, workers: int, config_file: Path | None = None
) -> None:
    """Run ``app.main:create_app`` under uvicorn until interrupted.

    Settings reach the app through the environment (``M2GRL_*``), the same way a container or a
    Kubernetes pod configures it. With several workers, Prometheus multiprocess mode needs a shared,
    initially empty directory: one is created when ``PROMETHEUS_MULTIPROC_DIR`` is not set.
    """
    import uvicorn

    os.environ["M2GRL_INDEX_ROOT"] = str(Path(index_root).resolve())
    if config_file is not None:
        os.environ["M2GRL_CONFIG_FILE"] = str(Path(config_file).resolve())
    if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="m2grl-prom-")
    uvicorn.run(
        "app.main:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="info",
        access_log=False,
    )
