"""The gateway's operations surface: liveness, readiness and metrics on their own port (`metrics_port`),
which the Ingress does not route, so the public never sees model names, revenue counters or trace ids.

Readiness degrades per dependency instead of failing as a whole: the gateway takes traffic while it
runs, a route whose backend is down answers 503 problem+json with Retry-After (gateway/problems.py),
and the rest keep working. `/readyz` says which dependencies answer; it is 503 only before the gateway
has started, so a probe never takes every replica out because one backend is down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import REGISTRY
from prometheus_client.exposition import choose_encoder

from gateway.bus import connect_bus

log = logging.getLogger(__name__)


def create_ops_app(app: FastAPI) -> FastAPI:
    """The operations endpoints of the public `app`, reading the state its lifespan made."""
    ops = FastAPI(title="Atelier gateway operations", openapi_url=None, docs_url=None, redoc_url=None)

    @ops.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @ops.get("/readyz")
    async def readyz() -> JSONResponse:
        state = app.state
        if getattr(state, "clients", None) is None:
            return JSONResponse({"status": "starting"}, status_code=503)
        services = await state.clients.health(state.settings.readiness_timeout_seconds)
        if state.bus is None:  # NATS was down when the gateway started: try again now
            state.bus = await connect_bus(state.settings)
            if state.bus is not None:
                await state.auth.share_limits(state.bus, state.settings.nats_stream_replicas)
        nats_ok = state.bus is not None and await state.bus.healthy()
        complete = nats_ok and all(status == "SERVING" for status in services.values())
        body: dict[str, Any] = {
            "status": "ready" if complete else "degraded",
            "services": services,
            "nats": "ok" if nats_ok else "unreachable",
        }
        return JSONResponse(body)

    @ops.get("/metrics")
    async def metrics(request: Request) -> Response:
        # OpenMetrics when the scraper asks for it (the Collector does): only that format keeps exemplars.
        encoder, content_type = choose_encoder(request.headers.get("accept", ""))
        return Response(encoder(REGISTRY), headers={"Content-Type": content_type})

    return ops


class _QuietServer(uvicorn.Server):
    """A uvicorn server that leaves the process's signals to the public server it runs beside."""

    @contextlib.contextmanager
    def capture_signals(self) -> Any:
        yield


@contextlib.asynccontextmanager
async def serving(app: FastAPI, host: str, port: int) -> AsyncIterator[None]:
    """Serves `create_ops_app(app)` on `host:port` while the context is open (port 0: not at all)."""
    if not port:
        yield
        return
    config = uvicorn.Config(create_ops_app(app), host=host, port=port, log_config=None, access_log=False)
    server = _QuietServer(config)
    task = asyncio.create_task(server.serve())
    while not server.started:  # listening before the gateway counts as started
        if task.done():
            task.result()  # raises what stopped it (a port in use, say)
            raise RuntimeError(f"the operations server on port {port} stopped at startup")
        await asyncio.sleep(0.01)
    try:
        yield
    finally:
        server.should_exit = True
        await task
