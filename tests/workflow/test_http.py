"""The gateway's workflow routes against the in-process workflow service and the fakes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.gateway_app import gateway_app, serving
from tests.infra import Infra
from tests.tokens import as_user, live_sessions
from tests.workflow.conftest import StartService
from tests.workflow.fakes import Fakes


@pytest.fixture
async def http(start_service: StartService, infra: Infra) -> AsyncIterator[httpx.AsyncClient]:
    service = await start_service()
    async with live_sessions() as accounts_addr:
        app = gateway_app(infra, workflow_addr=f"127.0.0.1:{service.port}", accounts_addr=accounts_addr)
        async with serving(app) as client:
            yield client


async def test_start_get_list_and_cancel_over_http(http: httpx.AsyncClient, fakes: Fakes) -> None:
    alice, bob = as_user("u_alice"), as_user("u_bob")
    fakes.ledger.posted["u_alice"] = 30_000
    fakes.generation.auto = False
    body = {"template_code": "ecom-video-pro", "inputs": {"productText": "A lamp", "ratio": "1:1"}}

    first = await http.post("/v1/workflow-runs", json=body, headers={**alice, "Idempotency-Key": "abc"})
    again = await http.post("/v1/workflow-runs", json=body, headers={**alice, "Idempotency-Key": "abc"})
    assert first.status_code == 201, first.text
    run = first.json()["run"]
    assert first.json()["created"] is True
    assert again.json()["created"] is False
    assert again.json()["run"]["id"] == run["id"]
    assert run["price"] == "12"
    assert run["status"] == "running"
    assert [s["key"] for s in run["steps"]] == ["image", "video"]
    assert fakes.ledger.balance("u_alice") == 18_000

    listed = await http.get("/v1/workflow-runs", headers=alice)
    assert [r["id"] for r in listed.json()["items"]] == [run["id"]]
    assert (await http.get("/v1/workflow-runs", headers=bob)).json()["items"] == []
    assert (await http.get(f"/v1/workflow-runs/{run['id']}", headers=bob)).status_code == 404

    canceled = await http.post(f"/v1/workflow-runs/{run['id']}/cancel", headers=alice)
    assert canceled.json()["status"] == "canceled"
    await asyncio.sleep(0.1)
    fetched = (await http.get(f"/v1/workflow-runs/{run['id']}", headers=alice)).json()
    assert fetched["refund_amount"] == "12"
    assert fetched["refund_transfer_id"] == f"run:{run['id']}:refund"
    assert fakes.ledger.balance("u_alice") == 30_000


async def test_http_errors_are_problems(http: httpx.AsyncClient, fakes: Fakes) -> None:
    alice = as_user("u_alice")
    fakes.ledger.posted["u_alice"] = 1_000
    body = {"template_code": "ecom-video-pro", "inputs": {"productText": "A lamp", "ratio": "1:1"}}

    poor = await http.post("/v1/workflow-runs", json=body, headers=alice)
    assert poor.status_code == 402
    assert poor.json()["code"] == "insufficient_balance"
    bad = await http.post(
        "/v1/workflow-runs", json={**body, "inputs": {"productText": "A lamp", "ratio": "7:3"}}, headers=alice
    )
    assert bad.status_code == 400
    assert bad.json()["code"] == "invalid_input"
    assert bad.headers["content-type"] == "application/problem+json"
    assert (await http.post("/v1/workflow-runs", json=body)).status_code == 401
    assert (await http.post("/v1/workflow-runs", json={"inputs": {}}, headers=alice)).status_code == 422
    assert (await http.get("/v1/workflow-runs?limit=0", headers=alice)).status_code == 422
    assert (await http.get("/v1/workflow-runs?cursor=zzz", headers=alice)).status_code == 400
    assert fakes.ledger.balance("u_alice") == 1_000
