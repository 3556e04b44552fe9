"""The gateway's operations surface, with no service running: liveness, readiness that says what is missing
without taking the gateway out, metrics apart from the public port, problem+json with Retry-After."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from devkit.embedded import free_port
from tests.gateway_app import gateway_app, serving
from tests.infra import Infra


@dataclass
class Gateway:
    public: httpx.AsyncClient
    ops: httpx.AsyncClient  # the operations port, over real HTTP as a kubelet or a scraper reaches it


@pytest.fixture
async def gateway(infra: Infra) -> AsyncIterator[Gateway]:
    ops_port = free_port()
    app = gateway_app(infra, readiness_timeout_seconds=0.2, http_host="127.0.0.1", metrics_port=ops_port)
    async with (
        serving(app) as public,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{ops_port}") as ops,
    ):
        yield Gateway(public, ops)


@pytest.fixture
def client(gateway: Gateway) -> httpx.AsyncClient:
    return gateway.public


async def test_liveness(gateway: Gateway) -> None:
    reply = await gateway.ops.get("/healthz")
    assert reply.status_code == 200
    assert reply.json() == {"status": "ok"}


async def test_readiness_names_what_is_missing_and_keeps_the_gateway_in(gateway: Gateway) -> None:
    reply = await gateway.ops.get("/readyz")
    # Degraded, not out: routes that need no missing backend keep working on this replica.
    assert reply.status_code == 200
    body = reply.json()
    assert body["status"] == "degraded"
    assert body["nats"] == "ok"
    assert body["services"] == dict.fromkeys(
        ("accounts", "catalog", "ledger", "generation", "workflow"), "UNREACHABLE"
    )


async def test_a_route_whose_backend_is_down_says_when_to_retry(gateway: Gateway) -> None:
    reply = await gateway.public.get("/v1/models", params={"kind": "image"})
    assert reply.status_code == 503
    assert reply.headers["content-type"] == "application/problem+json"
    assert reply.headers["retry-after"] == "2"
    assert (await gateway.public.get("/openapi.json")).status_code == 200  # the rest keeps working


async def test_operations_are_not_on_the_public_port(gateway: Gateway) -> None:
    for path in ("/healthz", "/readyz", "/metrics"):
        assert (await gateway.public.get(path)).status_code == 404


async def test_unknown_route_is_problem_json(client: httpx.AsyncClient) -> None:
    reply = await client.get("/v1/nothing-here")
    assert reply.status_code == 404
    assert reply.headers["content-type"] == "application/problem+json"
    assert reply.json()["code"] == "not_found"


async def test_metrics_count_requests_by_route(gateway: Gateway) -> None:
    await gateway.public.get("/v1/models", params={"kind": "image"})
    text = (await gateway.ops.get("/metrics")).text
    assert 'atelier_http_requests_total{method="GET",route="/v1/models",status="503"}' in text


async def test_metrics_speak_openmetrics_with_trace_exemplars(gateway: Gateway) -> None:
    """What the Collector scrapes: OpenMetrics (the only format that keeps exemplars) when asked."""
    trace_id = format(uuid.uuid4().int, "032x")
    context = SpanContext(uuid.UUID(trace_id).int, 0x99, is_remote=False, trace_flags=TraceFlags(1))
    with trace.use_span(NonRecordingSpan(context)):
        await gateway.public.get("/v1/models", params={"kind": "image"})
    plain = await gateway.ops.get("/metrics")
    assert plain.headers["content-type"].startswith("text/plain")
    assert "# {trace_id=" not in plain.text
    scraped = await gateway.ops.get(
        "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
    )
    assert scraped.headers["content-type"].startswith("application/openmetrics-text")
    assert scraped.text.endswith("# EOF\n")
    assert any(
        line.startswith("atelier_http_latency_seconds_bucket{")
        and 'route="/v1/models"' in line
        and f'# {{trace_id="{trace_id}"}}' in line
        for line in scraped.text.splitlines()
    )
