"""The FastAPI application: lifespan-owned clients, routers, problem+json errors."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import Depends, FastAPI

from gateway import edge, observability, ops, problems, web
from gateway.auth import AuthState
from gateway.bus import connect_bus
from gateway.clients import Clients
from gateway.docs.source import LiveCatalog
from gateway.live import LiveHub
from gateway.payments.runtime import PaymentsRuntime
from gateway.payments.settings import PaymentSettings
from gateway.routes import admin, auth, billing, catalog, docs, files, live, payments, tasks, workflows
from gateway.settings import GatewaySettings
from kit import telemetry

log = logging.getLogger(__name__)


def create_app(
    settings: GatewaySettings | None = None, payment_settings: PaymentSettings | None = None
) -> FastAPI:
    settings = settings or GatewaySettings()
    payment_settings = payment_settings or PaymentSettings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.settings = settings
        app.state.clients = Clients.connect(settings)
        app.state.docs_catalog = LiveCatalog(app.state.clients.channels["catalog"])
        app.state.bus = await connect_bus(settings)
        app.state.live = LiveHub()
        if app.state.bus is not None:
            await app.state.live.start(app.state.bus)
            await app.state.auth.share_limits(app.state.bus, settings.nats_stream_replicas)
        app.state.payments = PaymentsRuntime.start(payment_settings, app.state.clients.channels)
        try:
            async with ops.serving(app, settings.http_host, settings.metrics_port):
                yield
        finally:
            await app.state.payments.close()
            await app.state.live.stop()
            if app.state.bus is not None:
                await app.state.bus.close()
            await app.state.clients.close()

    app = FastAPI(
        title="Atelier API",
        version=settings.version,
        description="Credit-billed AI content platform: copy, image and video generation and workflows.",
        lifespan=lifespan,
        dependencies=[Depends(edge.check_request)],  # before any route's own dependencies
    )
    app.state.settings = settings
    app.state.auth = AuthState.from_settings(settings)
    problems.install(app)
    app.add_middleware(edge.BodyLimit, limit=settings.upload_max_bytes)
    observability.install(app)  # outermost: refusals are counted too
    for module in (auth, catalog, billing, live, docs, tasks, files, workflows, admin):
        app.include_router(module.router)
    for router in (payments.callbacks, payments.billing, payments.sandbox):
        app.include_router(router)
    app.include_router(web.router)  # the console; claims only its own page paths
    if settings.otel_exporter != "none":
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        FastAPIInstrumentor.instrument_app(
            app, excluded_urls="v1/auth/verify-email/"
        )  # the verification link carries its token in the path: keep it out of traces
    return app


def build() -> FastAPI:
    """uvicorn factory: `uvicorn --factory gateway.app:build`."""
    settings = GatewaySettings()
    telemetry.setup("gateway", settings)
    return create_app(settings)
