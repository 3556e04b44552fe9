"""The FastAPI application: lifespan-owned clients, routers, problem+json errors."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI

from gateway import problems
from gateway.bus import connect_bus
from gateway.clients import Clients
from gateway.routes import ops, tasks
from gateway.settings import GatewaySettings
from kit import telemetry

log = logging.getLogger(__name__)


def create_app(settings: GatewaySettings | None = None) -> FastAPI:
    settings = settings or GatewaySettings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.settings = settings
        app.state.clients = Clients.connect(settings)
        app.state.bus = await connect_bus(settings)
        try:
            yield
        finally:
            if app.state.bus is not None:
                await app.state.bus.close()
            await app.state.clients.close()

    app = FastAPI(
        title="Atelier API",
        version=settings.version,
        description="Credit-billed AI content platform: copy, image and video generation and workflows.",
        lifespan=lifespan,
    )
    problems.install(app)
    app.include_router(ops.router)
    app.include_router(tasks.router)
    if settings.otel_exporter != "none":
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        FastAPIInstrumentor.instrument_app(app, excluded_urls="healthz,readyz,metrics")
    return app


def build() -> FastAPI:
    """uvicorn factory: `uvicorn --factory gateway.app:build`."""
    settings = GatewaySettings()
    telemetry.setup("gateway", settings)
    return create_app(settings)
