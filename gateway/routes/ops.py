"""Liveness and readiness."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import REGISTRY
from prometheus_client.exposition import choose_encoder

from gateway.bus import connect_bus

router = APIRouter(tags=["ops"])


@router.get("/healthz", summary="Liveness: the gateway process answers")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness: every service reports SERVING and NATS answers")
async def readyz(request: Request) -> JSONResponse:
    state = request.app.state
    services = await state.clients.health(state.settings.readiness_timeout_seconds)
    if state.bus is None:  # NATS was down when the gateway started: try again now
        state.bus = await connect_bus(state.settings)
    nats_ok = state.bus is not None and await state.bus.healthy()
    ready = nats_ok and all(status == "SERVING" for status in services.values())
    body: dict[str, Any] = {
        "status": "ready" if ready else "not_ready",
        "services": services,
        "nats": "ok" if nats_ok else "unreachable",
    }
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get("/metrics", summary="Prometheus metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    # OpenMetrics when the scraper asks for it (the Collector does): only that format keeps exemplars.
    encoder, content_type = choose_encoder(request.headers.get("accept", ""))
    return Response(encoder(REGISTRY), headers={"Content-Type": content_type})
