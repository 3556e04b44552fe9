"""The gateway's own endpoints, with no service running: liveness, readiness that says why, problem+json."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from tests.gateway_app import gateway_app, serving
from tests.infra import Infra


@pytest.fixture
async def client(infra: Infra) -> AsyncIterator[httpx.AsyncClient]:
    async with serving(gateway_app(infra, readiness_timeout_seconds=0.2)) as client:
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


async def test_metrics_speak_openmetrics_with_trace_exemplars(client: httpx.AsyncClient) -> None:
    """What the Collector scrapes: OpenMetrics (the only format that keeps exemplars) when asked."""
    trace_id = format(uuid.uuid4().int, "032x")
    context = SpanContext(uuid.UUID(trace_id).int, 0x99, is_remote=False, trace_flags=TraceFlags(1))
    with trace.use_span(NonRecordingSpan(context)):
        await client.get("/healthz")
    plain = await client.get("/metrics")
    assert plain.headers["content-type"].startswith("text/plain")
    assert "# {trace_id=" not in plain.text
    scraped = await client.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert scraped.headers["content-type"].startswith("application/openmetrics-text")
    assert scraped.text.endswith("# EOF\n")
    assert any(
        line.startswith("atelier_http_latency_seconds_bucket{")
        and 'route="/healthz"' in line
        and f'# {{trace_id="{trace_id}"}}' in line
        for line in scraped.text.splitlines()
    )
