"""The gateway's own endpoints, with no service running: liveness, readiness that says why, problem+json."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from gateway.app import create_app
from gateway.settings import GatewaySettings
from kit.embedded import free_port
from tests.infra import Infra


@pytest.fixture
async def client(infra: Infra) -> AsyncIterator[httpx.AsyncClient]:
    dead = f"127.0.0.1:{free_port()}"
    settings = GatewaySettings(
        nats_url=infra.nats_url,
        namespace=infra.namespace,
        readiness_timeout_seconds=0.2,
        accounts_addr=dead,
        catalog_addr=dead,
        ledger_addr=dead,
        generation_addr=dead,
        workflow_addr=dead,
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            yield client


async def test_liveness(client: httpx.AsyncClient) -> None:
    reply = await client.get("/healthz")
    assert reply.status_code == 200
    assert reply.json() == {"status": "ok"}


async def test_readiness_names_what_is_missing(client: httpx.AsyncClient) -> None:
    reply = await client.get("/readyz")
    assert reply.status_code == 503
    body = reply.json()
    assert body["nats"] == "ok"
    assert body["services"] == dict.fromkeys(
        ("accounts", "catalog", "ledger", "generation", "workflow"), "UNREACHABLE"
    )


async def test_unknown_route_is_problem_json(client: httpx.AsyncClient) -> None:
    reply = await client.get("/v1/nothing-here")
    assert reply.status_code == 404
    assert reply.headers["content-type"] == "application/problem+json"
    assert reply.json()["code"] == "not_found"


async def test_metrics_count_requests_by_route(client: httpx.AsyncClient) -> None:
    await client.get("/healthz")
    text = (await client.get("/metrics")).text
    assert 'atelier_http_requests_total{method="GET",route="/healthz",status="200"}' in text
