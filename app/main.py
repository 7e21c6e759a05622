"""The FastAPI application: ``create_app(settings)``; ``uvicorn app.main:create_app --factory`` runs it.

Nothing is loaded at import: the lifespan reads the index root, builds the recent store and starts
the reload poller; every request reaches them through ``app.state.ctx`` (see ``app.deps``).
"""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import gc
import logging
from collections.abc import AsyncIterator
from typing import get_args

from anyio import CapacityLimiter
from fastapi import FastAPI

from app.ab import Assigner
from app.catalogue import Catalogues
from app.errors import install_error_handlers
from app.feedback import with_feedback_secret
from app.limits import BodySizeLimit
from app.metrics import Metrics, MetricsMiddleware
from app.openapi import install_openapi
from app.reload import IndexManager, Loader, serving_loader
from app.routes import HOT_ROUTES, ROUTERS, explore
from app.schemas import ModeName
from app.service import AppContext
from app.settings import Settings
from app.stores import make_store

log = logging.getLogger("m2grl.app")

DESCRIPTION = """Item-to-item candidate retrieval with M2GRL embeddings (KDD 2020).

`general` mode returns similar items, `diversity` mode related items from other categories (the
metric model of section 6.1). A/B variants are assigned by a stable hash of the user header and can be
forced with the variant header. Every answer carries a signed `request_id` (also `X-Request-Id`):
post the answer's impressions and clicks with it to `POST /feedback`. Errors are
`{"error", "detail", "allowed"}`.
"""


def create_app(settings: Settings | None = None, *, loader: Loader | None = None) -> FastAPI:
    """Build the service. ``settings`` default to the environment (``M2GRL_*``, ``M2GRL_CONFIG_FILE``)
    and are validated here, so a bad value stops start-up. ``loader`` opens one index version
    folder (default ``serving_loader(settings.index_private_max_bytes)``; tests may wrap it)."""
    settings = settings if settings is not None else Settings()  # type: ignore[call-arg]
    load = loader if loader is not None else serving_loader(settings.index_private_max_bytes)
    settings = with_feedback_secret(settings)
    metrics = Metrics()
    metrics.init_feedback(settings.variant_names, get_args(ModeName))

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # a fatal signal (SIGBUS from a memory-mapped file truncated on disk, SIGSEGV) leaves its cause
        # and the Python stack on stderr instead of a silent exit
        faulthandler.enable()
        manager = IndexManager(
            settings.index_root,
            category_view=settings.category_view,
            pinned_versions=settings.pinned_versions,
            required_channels=settings.required_channels,
            metrics=metrics,
            loader=load,
            verify_s=settings.index_verify_s,
        )
        outcome = await manager.reload()
        log.info("start-up index load: %s %s %s", outcome.result, outcome.version, outcome.detail)
        store = make_store(settings)
        assigner = Assigner.from_variants(settings.experiment.salt, settings.experiment.variants)
        heavy = CapacityLimiter(settings.batch_threads)
        # the objects of start-up (modules, the index) live as long as the process: frozen, the cyclic
        # collector stops walking them, which made each full collection a pause of tens of ms
        gc.freeze()
        app.state.ctx = AppContext(settings, manager, store, metrics, assigner, heavy)
        poller = asyncio.create_task(manager.poll_forever(settings.reload_poll_s), name="index-poller")
        try:
            yield
        finally:
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poller
            await store.close()
            metrics.process_exit()

    app = FastAPI(
        title="M2GRL retrieval service",
        version="1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url="/docs" if settings.docs_pages else None,
        redoc_url="/redoc" if settings.docs_pages else None,
        # the service's metrics are Prometheus's (app.metrics); FastAPI's OpenTelemetry hooks would look
        # up their providers on every request (~10 us of the hot path) to find them unconfigured
        telemetry={"tracing": False, "metrics": False},
    )
    for router in ROUTERS:
        app.include_router(router)
    # titles and the explorer's data, read from a version only when someone asks (app.catalogue)
    app.state.catalogues = Catalogues(settings.index_root)
    if settings.docs_pages:
        app.include_router(explore.router)
    # matched first: the hot retrieval paths skip FastAPI's route handling (see app.routes.HotRoute)
    app.router.routes[:0] = HOT_ROUTES
    install_error_handlers(app, metrics)
    install_openapi(app, settings)
    # added last = outermost: times everything, including the size check and error handlers
    app.add_middleware(
        BodySizeLimit,
        max_bytes=settings.max_body_bytes,
        max_header_bytes=settings.max_header_bytes,
        body_timeout_s=settings.body_timeout_s,
    )
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app
