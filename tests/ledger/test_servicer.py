"""The LedgerService over a real grpc.aio server in-process: errors keep their status and code."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration

from atelier.common.v1 import common_pb2
from atelier.ledger.v1 import ledger_pb2 as pb
from atelier.ledger.v1 import ledger_pb2_grpc
from kit.bus import Bus
from kit.db import Database
from kit.errors import from_rpc_error
from kit.grpc_server import GrpcServer
from kit.outbox import Outbox
from kit.service import Runtime
from services.ledger.models import outbox
from services.ledger.service import Ledger
from services.ledger.servicer import LedgerServicer
from services.ledger.settings import LedgerSettings
from services.ledger.sweeper import expire_due_holds
from tests import identities


def credits(whole: int) -> common_pb2.Credits:
    return common_pb2.Credits(milli=whole * 1000)


@pytest.fixture
async def stub(db: Database, bus: Bus) -> AsyncIterator[ledger_pb2_grpc.LedgerServiceStub]:
    runtime = Runtime("ledger", LedgerSettings(), db, bus, asyncio.Event(), outbox=Outbox(outbox))
    server = GrpcServer("ledger", host="127.0.0.1", port=0)
    ledger_pb2_grpc.add_LedgerServiceServicer_to_server(LedgerServicer(runtime), server.server)
    port = await server.start()
    async with identities.channel(f"127.0.0.1:{port}") as channel:
        yield ledger_pb2_grpc.LedgerServiceStub(channel)
    await server.stop(0.5)


async def code_of(call: object) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call  # type: ignore[misc]
    error = from_rpc_error(caught.value)
    assert error is not None
    return caught.value.code(), error.code


async def test_hold_capture_refund_and_statement(stub: ledger_pb2_grpc.LedgerServiceStub) -> None:
    user = f"u-{uuid.uuid4().hex[:8]}"
    await stub.Credit(
        pb.CreditRequest(
            transfer_id=f"grant:{user}", user_id=user, amount=credits(10), kind=pb.CREDIT_KIND_GRANT
        )
    )
    task = pb.Reference(type=pb.REFERENCE_TYPE_TASK, id=f"task-{user}")
    hold = await stub.Hold(
        pb.HoldRequest(
            transfer_id=f"hold:{user}:1",
            user_id=user,
            amount=credits(4),
            ttl=Duration(seconds=600),
            reference=task,
            metadata={"model": "seedream", "kind": "image"},
        )
    )
    assert hold.hold.status == pb.TRANSFER_STATUS_PENDING
    assert hold.balance.available.milli == 6000
    assert hold.balance.held.milli == 4000
    again = await stub.Hold(
        pb.HoldRequest(
            transfer_id=f"hold:{user}:1",
            user_id=user,
            amount=credits(4),
            ttl=Duration(seconds=600),
            reference=task,
            metadata={"model": "seedream", "kind": "image"},
        )
    )
    assert again.replayed
    captured = await stub.Capture(
        pb.CaptureRequest(transfer_id=f"cap:{user}", hold_id=f"hold:{user}:1", amount=credits(3))
    )
    assert captured.hold.status == pb.TRANSFER_STATUS_POSTED
    assert captured.balance.posted.milli == 7000
    assert captured.balance.held.milli == 0
    refund = await stub.Refund(
        pb.RefundRequest(transfer_id=f"ref:{user}", original_transfer_id=f"cap:{user}", amount=credits(1))
    )
    assert refund.refundable_remaining.milli == 2000
    assert refund.balance.available.milli == 8000

    balance = await stub.GetBalance(pb.GetBalanceRequest(user_id=user))
    assert balance.balance.available.milli == 8000

    usage = await stub.GetUsage(pb.GetUsageRequest(user_id=user, group_by=pb.USAGE_GROUP_BY_MODEL))
    assert [(b.key, b.spend.milli, b.count) for b in usage.buckets] == [("seedream", 2000, 1)]

    page1 = await stub.ListRecords(pb.ListRecordsRequest(user_id=user, page=common_pb2.PageRequest(limit=2)))
    assert [r.type for r in page1.records] == [pb.RECORD_TYPE_REFUND, pb.RECORD_TYPE_CONSUMPTION]
    assert page1.records[0].delta.milli == 1000
    assert page1.records[1].delta.milli == -3000
    page2 = await stub.ListRecords(
        pb.ListRecordsRequest(
            user_id=user, page=common_pb2.PageRequest(limit=2, cursor=page1.page.next_cursor)
        )
    )
    assert [r.type for r in page2.records] == [pb.RECORD_TYPE_ADJUSTMENT]
    assert page2.page.next_cursor == ""

    chain = await stub.GetSpendChain(pb.GetSpendChainRequest(id=f"task-{user}"))
    assert [t.kind for t in chain.transfers] == [
        pb.TRANSFER_KIND_HOLD,
        pb.TRANSFER_KIND_CAPTURE,
        pb.TRANSFER_KIND_REFUND,
    ]


async def test_errors_cross_the_wire_with_their_codes(stub: ledger_pb2_grpc.LedgerServiceStub) -> None:
    user = f"u-{uuid.uuid4().hex[:8]}"
    assert await code_of(
        stub.Hold(pb.HoldRequest(transfer_id=f"h:{user}", user_id=user, amount=credits(1)))
    ) == (grpc.StatusCode.FAILED_PRECONDITION, "insufficient_balance")
    assert await code_of(stub.Capture(pb.CaptureRequest(transfer_id=f"c:{user}", hold_id="missing"))) == (
        grpc.StatusCode.NOT_FOUND,
        "hold_not_found",
    )
    assert await code_of(
        stub.Debit(
            pb.DebitRequest(transfer_id=f"d:{user}", user_id=user, amount=common_pb2.Credits(milli=-5))
        )
    ) == (grpc.StatusCode.INVALID_ARGUMENT, "invalid_amount")
    await stub.Credit(
        pb.CreditRequest(transfer_id=f"g:{user}", user_id=user, amount=credits(1), kind=pb.CREDIT_KIND_GRANT)
    )
    assert await code_of(
        stub.Credit(
            pb.CreditRequest(
                transfer_id=f"g:{user}", user_id=user, amount=credits(2), kind=pb.CREDIT_KIND_GRANT
            )
        )
    ) == (grpc.StatusCode.ABORTED, "idempotency_conflict")


async def test_recharge_order_and_callbacks(stub: ledger_pb2_grpc.LedgerServiceStub) -> None:
    user = f"u-{uuid.uuid4().hex[:8]}"
    order_id = f"order-{user}"
    created = await stub.CreateRechargeOrder(
        pb.CreateRechargeOrderRequest(
            order_id=order_id,
            user_id=user,
            method="wechatpay",
            provider="wechatpay",
            amount=common_pb2.Money(minor=10000, currency="CNY"),
            paid_credits=credits(100),
            bonus_credits=credits(5),
            catalog_version=3,
        )
    )
    assert created.order.status == pb.RECHARGE_ORDER_STATUS_PENDING
    attached = await stub.AttachRechargeCheckout(
        pb.AttachRechargeCheckoutRequest(
            order_id=order_id, provider_checkout_id="wx-prepay", pay_url="weixin://x"
        )
    )
    assert attached.order.pay_url == "weixin://x"
    pending = await stub.ListPendingRechargeOrders(pb.ListPendingRechargeOrdersRequest(provider="wechatpay"))
    assert order_id in [o.id for o in pending.orders]

    assert await code_of(
        stub.CompleteRechargeOrder(
            pb.CompleteRechargeOrderRequest(
                order_id=order_id,
                provider_transaction_id="wx-1",
                paid=common_pb2.Money(minor=1, currency="CNY"),
            )
        )
    ) == (grpc.StatusCode.FAILED_PRECONDITION, "amount_mismatch")
    refused = await stub.GetRechargeOrder(pb.GetRechargeOrderRequest(order_id=order_id))
    assert refused.order.status == pb.RECHARGE_ORDER_STATUS_PENDING
    assert "paid 0.01 CNY" in refused.order.failure_reason

    await stub.RecordCallback(
        pb.RecordCallbackRequest(
            callback_id=f"cb-{user}",
            provider="wechatpay",
            order_id=order_id,
            verified=True,
            outcome=pb.CALLBACK_OUTCOME_CREDITED,
            provider_status="SUCCESS",
            amount=common_pb2.Money(minor=10000, currency="CNY"),
            payload_json='{"id": "evt"}',
        )
    )
    done = await stub.CompleteRechargeOrder(
        pb.CompleteRechargeOrderRequest(
            order_id=order_id,
            provider_transaction_id="wx-1",
            paid=common_pb2.Money(minor=10000, currency="CNY"),
            callback_id=f"cb-{user}",
        )
    )
    assert not done.already_completed
    assert done.balance.available.milli == 105000
    twice = await stub.CompleteRechargeOrder(
        pb.CompleteRechargeOrderRequest(
            order_id=order_id,
            provider_transaction_id="wx-1",
            paid=common_pb2.Money(minor=10000, currency="CNY"),
        )
    )
    assert twice.already_completed
    assert twice.balance.available.milli == 105000

    callbacks = await stub.ListCallbacks(pb.ListCallbacksRequest(user_id=user))
    assert [c.id for c in callbacks.callbacks] == [f"cb-{user}"]
    records = await stub.ListRecords(
        pb.ListRecordsRequest(user_id=user, types=[pb.RECORD_TYPE_RECHARGE, pb.RECORD_TYPE_CALLBACK])
    )
    assert sorted(r.type for r in records.records) == [
        pb.RECORD_TYPE_RECHARGE,
        pb.RECORD_TYPE_RECHARGE,
        pb.RECORD_TYPE_CALLBACK,
    ]
    chain = await stub.GetSpendChain(pb.GetSpendChainRequest(id=order_id))
    assert chain.order.status == pb.RECHARGE_ORDER_STATUS_COMPLETED
    assert len(chain.transfers) == 2
    assert [c.id for c in chain.callbacks] == [f"cb-{user}"]


async def test_the_sweeper_voids_a_hold_the_api_made(
    stub: ledger_pb2_grpc.LedgerServiceStub, db: Database, bus: Bus
) -> None:
    user = f"u-{uuid.uuid4().hex[:8]}"
    await stub.Credit(
        pb.CreditRequest(transfer_id=f"g:{user}", user_id=user, amount=credits(2), kind=pb.CREDIT_KIND_GRANT)
    )
    await stub.Hold(
        pb.HoldRequest(transfer_id=f"h:{user}", user_id=user, amount=credits(2), ttl=Duration(nanos=1000))
    )
    await asyncio.sleep(0.01)
    assert await code_of(stub.Capture(pb.CaptureRequest(transfer_id=f"c:{user}", hold_id=f"h:{user}"))) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "hold_expired",
    )
    runtime = Runtime("ledger", LedgerSettings(), db, bus, asyncio.Event(), outbox=Outbox(outbox))
    expired = await expire_due_holds(runtime, Ledger(Outbox(outbox)), now=datetime.now(UTC), limit=200)
    assert f"h:{user}" in [t.id for t in expired]
    transfer = await stub.GetTransfer(pb.GetTransferRequest(transfer_id=f"h:{user}"))
    assert transfer.transfer.status == pb.TRANSFER_STATUS_EXPIRED
    balance = await stub.GetBalance(pb.GetBalanceRequest(user_id=user))
    assert balance.balance.available.milli == 2000


async def test_a_refused_id_stays_refused_after_a_top_up(stub: ledger_pb2_grpc.LedgerServiceStub) -> None:
    user = f"u-{uuid.uuid4().hex[:8]}"
    hold = pb.HoldRequest(transfer_id=f"hold:{user}:1", user_id=user, amount=credits(5))
    assert await code_of(stub.Hold(hold)) == (grpc.StatusCode.FAILED_PRECONDITION, "insufficient_balance")
    await stub.Credit(
        pb.CreditRequest(transfer_id=f"g:{user}", user_id=user, amount=credits(10), kind=pb.CREDIT_KIND_GRANT)
    )
    assert await code_of(stub.Hold(hold)) == (grpc.StatusCode.FAILED_PRECONDITION, "insufficient_balance")
    other = pb.HoldRequest(transfer_id=f"hold:{user}:1", user_id=user, amount=credits(1))
    assert await code_of(stub.Hold(other)) == (grpc.StatusCode.ABORTED, "idempotency_conflict")
    fresh = await stub.Hold(pb.HoldRequest(transfer_id=f"hold:{user}:2", user_id=user, amount=credits(5)))
    assert fresh.balance.available.milli == 5000


async def test_concurrent_holds_and_captures_over_grpc(stub: ledger_pb2_grpc.LedgerServiceStub) -> None:
    """Through the group commit: 15 concurrent holds of 1 against 5 credits (each sent twice, the
    retry replaying), then every successful hold captured concurrently, each exactly once. (Small:
    the PostgreSQL server's connections are shared with every other test run on the machine.)"""
    user = f"u-{uuid.uuid4().hex[:8]}"
    await stub.Credit(
        pb.CreditRequest(transfer_id=f"g:{user}", user_id=user, amount=credits(5), kind=pb.CREDIT_KIND_GRANT)
    )

    async def hold(i: int) -> str:
        request = pb.HoldRequest(transfer_id=f"hold:{user}:{i}", user_id=user, amount=credits(1))
        try:
            first, again = await asyncio.gather(stub.Hold(request), stub.Hold(request))
        except grpc.aio.AioRpcError as exc:
            error = from_rpc_error(exc)
            return error.code if error else "?"
        assert first.hold == again.hold
        assert first.replayed != again.replayed
        return request.transfer_id

    outcomes = await asyncio.gather(*(hold(i) for i in range(15)))
    held = [o for o in outcomes if o.startswith("hold:")]
    assert len(held) == 5
    assert sorted(set(outcomes) - set(held)) == ["insufficient_balance"]
    captures = await asyncio.gather(
        *(
            stub.Capture(pb.CaptureRequest(transfer_id=f"capture:{h}:{n}", hold_id=h))
            for h in held
            for n in range(2)
        ),
        return_exceptions=True,
    )
    codes = sorted(
        "ok" if isinstance(c, pb.CaptureResponse) else getattr(from_rpc_error(c), "code", "?")
        for c in captures
    )
    assert codes == ["hold_already_captured"] * 5 + ["ok"] * 5
    balance = await stub.GetBalance(pb.GetBalanceRequest(user_id=user))
    assert (balance.balance.available.milli, balance.balance.held.milli, balance.balance.posted.milli) == (
        0,
        0,
        0,
    )
