"""The spend debugger: the ledger's chain for a transfer, order, task or run id, joined with the task
or run from generation and workflow when they can answer, with a tracing-UI link per trace id."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from google.protobuf.duration_pb2 import Duration
from opentelemetry import trace

from atelier.catalog.v1 import catalog_pb2
from atelier.common.v1 import common_pb2
from atelier.generation.v1 import generation_pb2
from atelier.ledger.v1 import ledger_pb2
from devkit.embedded import free_port
from kit.money import Money
from tests.accounts.stack import AccountsStack
from tests.gateway.admin.conftest import TRACING_UI, Admin, Fakes, LedgerStack, admin_client
from tests.infra import Infra


def link(trace_id: str) -> str:
    return TRACING_UI.replace("{trace_id}", trace_id)


def new_trace_id() -> str:
    return format(uuid.uuid4().int & ((1 << 128) - 1), "032x")


def in_trace(trace_id: str) -> trace.Span:
    context = trace.SpanContext(trace_id=int(trace_id, 16), span_id=0xABC, is_remote=True)
    return trace.NonRecordingSpan(context)


async def paid_recharge(ledger: LedgerStack, user: str, trace_id: str) -> str:
    """A 300 CNY sandbox recharge (330 credits) paid by a verified callback, inside `trace_id`."""
    with trace.use_span(in_trace(trace_id)):
        order_id = await ledger.sandbox_order(user)
        async with ledger.db.transaction() as session:
            await ledger.ledger.record_callback(
                session,
                callback_id=f"cb_{order_id}",
                provider="sandbox",
                provider_event_id=f"evt_{order_id}",
                order_id=order_id,
                verified=True,
                outcome="credited",
                amount=Money(30000, "CNY"),
            )
        async with ledger.db.transaction() as session:
            await ledger.ledger.complete_order(
                session,
                order_id=order_id,
                provider_transaction_id=f"tx_{order_id}",
                paid=Money(30000, "CNY"),
                callback_id=f"cb_{order_id}",
            )
    return order_id


async def test_a_recharge_transfer_shows_its_chain_and_trace_links(api_without_catalog: Admin) -> None:
    api = api_without_catalog
    user = await api.new_user()
    trace_id = new_trace_id()
    order_id = await paid_recharge(api.ledger, user, trace_id)
    order = (
        await api.ledger.stub.GetRechargeOrder(ledger_pb2.GetRechargeOrderRequest(order_id=order_id))
    ).order

    for some_id in (order.credit_transfer_id, order.bonus_transfer_id, order_id):
        reply = await api.http.get(f"/v1/admin/spend/{some_id}", headers=api.headers)
        assert reply.status_code == 200, reply.text
        chain = reply.json()
        assert chain["reference"] == {"type": "recharge_order", "id": order_id}
        assert [(t["kind"], t["amount"]) for t in chain["transfers"]] == [
            ("recharge", "300"),
            ("bonus", "30"),
        ]
        assert {t["trace_id"] for t in chain["transfers"]} == {trace_id}
        assert {t["trace_url"] for t in chain["transfers"]} == {link(trace_id)}
        assert chain["order"]["id"] == order_id
        assert chain["order"]["status"] == "completed"
        assert [c["outcome"] for c in chain["callbacks"]] == ["credited"]
        assert chain["traces"] == [{"trace_id": trace_id, "url": link(trace_id)}]
        assert chain["sources"] == {"ledger": "ok", "generation": "skipped", "workflow": "skipped"}
        assert chain["task"] is None

    by_trace = (await api.http.get(f"/v1/admin/spend/{trace_id}", headers=api.headers)).json()
    assert {t["id"] for t in by_trace["transfers"]} == {order.credit_transfer_id, order.bonus_transfer_id}


async def held_task(api: Admin) -> tuple[str, str]:
    user = await api.new_user()
    await api.ledger.stub.Credit(
        ledger_pb2.CreditRequest(
            transfer_id=f"grant-{user}",
            user_id=user,
            amount=common_pb2.Credits(milli=5000),
            kind=ledger_pb2.CREDIT_KIND_GRANT,
        )
    )
    task_id = f"tsk_{uuid.uuid4().hex[:16]}"
    await api.ledger.stub.Hold(
        ledger_pb2.HoldRequest(
            transfer_id=f"hold:{task_id}:1",
            user_id=user,
            amount=common_pb2.Credits(milli=500),
            ttl=Duration(seconds=600),
            reference=ledger_pb2.Reference(type=ledger_pb2.REFERENCE_TYPE_TASK, id=task_id),
            metadata={"model": "grok-4-1-image", "kind": "image"},
        )
    )
    return user, task_id


async def test_a_task_joins_generation_when_it_answers(api_without_catalog: Admin) -> None:
    api = api_without_catalog
    user, task_id = await held_task(api)
    task_trace = new_trace_id()
    api.fakes.generation.tasks[task_id] = generation_pb2.Task(
        id=task_id,
        user_id=user,
        kind=common_pb2.MODEL_KIND_IMAGE,
        model_code="grok-4-1-image",
        status=generation_pb2.TASK_STATUS_RUNNING,
        price=common_pb2.Credits(milli=500),
        quote=catalog_pb2.QuoteSnapshot(
            model_code="grok-4-1-image",
            unit=catalog_pb2.BILLING_UNIT_PER_GENERATION,
            unit_price=common_pb2.Credits(milli=500),
            total=common_pb2.Credits(milli=500),
            quantity=1,
            catalog_version=7,
        ),
        hold_id=f"hold:{task_id}:1",
        trace_id=task_trace,
    )
    for some_id in (task_id, f"hold:{task_id}:1"):
        reply = await api.http.get(f"/v1/admin/spend/{some_id}", headers=api.headers)
        assert reply.status_code == 200, reply.text
        chain = reply.json()
        assert chain["reference"] == {"type": "task", "id": task_id}
        assert [t["kind"] for t in chain["transfers"]] == ["hold"]
        assert chain["task"]["status"] == "running"
        assert chain["task"]["hold_id"] == chain["transfers"][0]["id"]
        assert chain["task"]["quote"]["total"] == "0.5"
        assert chain["task"]["quote"]["catalog_version"] == 7
        assert chain["task"]["trace_url"] == link(task_trace)
        assert task_trace in [t["trace_id"] for t in chain["traces"]]
        assert chain["sources"] == {"ledger": "ok", "generation": "ok", "workflow": "skipped"}
    assert set(api.fakes.generation.callers) == {"admin"}

    # A run the ledger does not know, asked of a workflow service that is not finished: 404, no 500.
    run = await api.http.get("/v1/admin/spend/run_unknown", headers=api.headers)
    assert run.status_code == 404
    assert run.json()["sources"] == {
        "ledger": "not_found",
        "generation": "not_found",
        "workflow": "unimplemented",
    }


@pytest.fixture
async def api_without_generation(
    infra: Infra, accounts_stack: AccountsStack, ledger_stack: LedgerStack, fakes: Fakes
) -> AsyncIterator[Admin]:
    down = f"127.0.0.1:{free_port()}"
    async for admin in admin_client(
        infra, accounts_stack, ledger_stack, fakes, None, generation=down, workflow=down
    ):
        yield admin


async def test_the_ledger_chain_stands_when_generation_is_down(api_without_generation: Admin) -> None:
    api = api_without_generation
    _, task_id = await held_task(api)
    reply = await api.http.get(f"/v1/admin/spend/{task_id}", headers=api.headers)
    assert reply.status_code == 200, reply.text
    chain = reply.json()
    assert chain["task"] is None
    assert [t["kind"] for t in chain["transfers"]] == ["hold"]
    assert chain["sources"] == {"ledger": "ok", "generation": "unavailable", "workflow": "skipped"}

    nothing = await api.http.get("/v1/admin/spend/nobody-knows-this", headers=api.headers)
    assert nothing.status_code == 404
    assert nothing.json()["code"] == "not_found"
    bad = await api.http.get("/v1/admin/spend/%20drop%20table", headers=api.headers)
    assert bad.status_code == 422


@pytest.fixture
async def api_without_ledger(
    infra: Infra, accounts_stack: AccountsStack, ledger_stack: LedgerStack, fakes: Fakes
) -> AsyncIterator[Admin]:
    async for admin in admin_client(
        infra, accounts_stack, ledger_stack, fakes, None, ledger=f"127.0.0.1:{free_port()}"
    ):
        yield admin


async def test_a_task_is_shown_without_the_ledger_and_nothing_known_is_503(api_without_ledger: Admin) -> None:
    api = api_without_ledger
    task_id = f"tsk_{uuid.uuid4().hex[:16]}"
    api.fakes.generation.tasks[task_id] = generation_pb2.Task(
        id=task_id, status=generation_pb2.TASK_STATUS_FAILED, hold_id=f"hold:{task_id}:1"
    )
    shown = await api.http.get(f"/v1/admin/spend/{task_id}", headers=api.headers)
    assert shown.status_code == 200, shown.text
    assert shown.json()["task"]["status"] == "failed"
    assert shown.json()["transfers"] == []
    assert shown.json()["sources"]["ledger"] == "unavailable"

    unknown = await api.http.get("/v1/admin/spend/tr_unknown", headers=api.headers)
    assert (unknown.status_code, unknown.json()["code"]) == (503, "upstream_unavailable")
