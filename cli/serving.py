"""Start the service with uvicorn (used by ``m2grl serve`` and ``m2grl demo``)."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from pydantic import ValidationError

from app.settings import CONFIG_FILE_ENV, Settings
from index.publish import current_version

log = logging.getLogger("m2grl.serve")

#: Seconds uvicorn lets in-flight requests finish after SIGTERM: inside the Kubernetes Deployment's
#: 30 s termination grace period, after its 5 s preStop pause.
GRACEFUL_SHUTDOWN_S = 20


class ServeError(ValueError):
    """``m2grl serve`` cannot start: one line saying why."""


def settings_error(exc: ValidationError) -> str:
    """A settings validation error as one line: each bad field, what is wrong, the value given."""
    parts = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err.get("loc", ())) or "settings"
        given = err.get("input")
        shown = "" if isinstance(given, dict) else f" (got {str(given)[:80]!r})"
        parts.append(f"{field}: {err.get('msg', 'invalid')}{shown}")
    return "bad settings: " + "; ".join(parts)


def serve_settings(*, index_root: Path, workers: int, config_file: Path | None = None) -> Settings:
    """Check what ``m2grl serve`` was given and read the service settings as a worker will (the
    environment ``M2GRL_*``, which this sets for the workers, and the config file). Raises ``ServeError``
    with one line; warns once when the index root has nothing to serve yet."""
    if workers < 1:
        raise ServeError(f"--workers must be at least 1, got {workers}")
    root = Path(index_root)
    if root.exists() and not root.is_dir():
        raise ServeError(f"--index-root {root} is a file, not an index root folder")
    if config_file is not None and not Path(config_file).is_file():
        raise ServeError(f"--config-file {config_file}: no such file")
    os.environ["M2GRL_INDEX_ROOT"] = str(root.resolve())
    if config_file is not None:
        os.environ[CONFIG_FILE_ENV] = str(Path(config_file).resolve())
    try:
        settings = Settings()  # type: ignore[call-arg]
    except ValidationError as exc:
        raise ServeError(settings_error(exc)) from None
    except ValueError as exc:  # the config file named by M2GRL_CONFIG_FILE (missing, wrong suffix)
        raise ServeError(f"bad settings: {exc}") from None
    if not root.is_dir():
        log.warning(
            "index root %s does not exist: the service starts unready until a version is published there",
            root,
        )
    elif current_version(root) is None:
        log.warning(
            "index root %s has no CURRENT: the service starts unready until a version is published", root
        )
    return settings


@contextlib.contextmanager
def multiprocess_dir(workers: int) -> Iterator[None]:
    """With several workers, Prometheus multiprocess mode needs a shared, initially empty folder: make a
    temporary one when ``PROMETHEUS_MULTIPROC_DIR`` is not set, and remove it at exit."""
    if workers <= 1 or os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        yield
        return
    path = tempfile.mkdtemp(prefix="m2grl-prom-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    try:
        yield
    finally:
        del os.environ["PROMETHEUS_MULTIPROC_DIR"]
        shutil.rmtree(path, ignore_errors=True)


def run_server(
    *, index_root: Path, host: str, port: int, workers: int, config_file: Path | None = None
) -> None:
    """Run ``app.main:create_app`` under uvicorn until interrupted.

    Settings reach the app through the environment (``M2GRL_*``), the same way a container or a
    Kubernetes pod configures it; they are validated here first (``serve_settings``), so a bad value is
    one line, not a traceback per worker. uvicorn's own limits (keep-alive timeout, concurrency,
    backlog) come from the same settings. The container's start script runs this too (through
    ``m2grl serve``), so both answer parser-level 400s with the JSON error body. Raises ``ServeError``.
    """
    import uvicorn

    from app.protocol import JsonErrorsHttpToolsProtocol

    settings = serve_settings(index_root=index_root, workers=workers, config_file=config_file)
    with multiprocess_dir(workers):
        uvicorn.run(
            "app.main:create_app",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level="info",
            access_log=False,
            http=JsonErrorsHttpToolsProtocol,
            timeout_keep_alive=settings.timeout_keep_alive_s,
            limit_concurrency=settings.limit_concurrency,
            backlog=settings.backlog,
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        )
