"""The ledger's contract, run through a gRPC stub against both the shared fake (`tests/fakes/ledger.py`)
and the real servicer on PostgreSQL: the same requests must get the same observable answers (status
codes, error codes, balances), so the fake the other services' tests lean on cannot drift."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from atelier.common.v1 import common_pb2
from atelier.ledger.v1 import ledger_pb2 as pb
from atelier.ledger.v1 import ledger_pb2_grpc
from kit.bus import Bus
from kit.db import Database
from kit.grpc_server import GrpcServer
from kit.outbox import Outbox
from kit.service import Runtime
from services.ledger.models import outbox
from services.ledger.servicer import LedgerServicer
from services.ledger.settings import LedgerSettings
from tests import identities
from tests.conftest import MigratedDatabase
from tests.fakes.contract import cny, refused
from tests.fakes.ledger import FakeLedger

Stub = ledger_pb2_grpc.LedgerServiceStub


@pytest.fixture(params=["fake", "real"])
async def stub(
    request: pytest.FixtureRequest, migrated_database: MigratedDatabase, bus: Bus
) -> AsyncIterator[Stub]:
    server = GrpcServer("ledger", host="127.0.0.1", port=0)
    database: Database | None = None
    if request.param == "fake":
        servicer: ledger_pb2_grpc.LedgerServiceServicer = FakeLedger()  # type: ignore[abstract]
    else:
        database = Database(await migrated_database("ledger"), application_name="atelier-tests")
        runtime = Runtime("ledger", LedgerSettings(), database, bus, asyncio.Event(), outbox=Outbox(outbox))
        servicer = LedgerServicer(runtime)
    ledger_pb2_grpc.add_LedgerServiceServicer_to_server(servicer, server.server)
    port = await server.start()
    try:
        async with identities.channel(f"127.0.0.1:{port}") as channel:
            yield Stub(channel)
    finally:
        await server.stop(0.2)
        if database is not None:
            await database.dispose()


def milli(whole: int) -> common_pb2.Credits:
    return common_pb2.Credits(milli=whole * 1000)


async def funded(stub: Stub, whole: int) -> str:
    """A fresh user holding `whole` credits (ids are unique, so backends never share state)."""
    user = f"u-{uuid.uuid4().hex[:10]}"
    await stub.Credit(
        pb.CreditRequest(
            transfer_id=f"grant:{user}", user_id=user, amount=milli(whole), kind=pb.CREDIT_KIND_GRANT
        )
    )
    return user


def hold(user: str, whole: int, n: int = 1) -> pb.HoldRequest:
    return pb.HoldRequest(
        transfer_id=f"hold:{user}:{n}", user_id=user, amount=milli(whole), ttl=Duration(seconds=600)
    )


def amounts(balance: pb.Balance) -> tuple[int, int, int]:
    return balance.available.milli, balance.held.milli, balance.posted.milli


async def test_a_hold_within_the_balance_is_pending_and_held(stub: Stub) -> None:
    user = await funded(stub, 10)
    reply = await stub.Hold(hold(user, 4))
    assert reply.hold.status == pb.TRANSFER_STATUS_PENDING
    assert not reply.replayed
    assert amounts(reply.balance) == (6000, 4000, 10_000)
    balance = await stub.GetBalance(pb.GetBalanceRequest(user_id=user))
    assert amounts(balance.balance) == (6000, 4000, 10_000)


async def test_a_hold_over_the_balance_is_refused_and_stays_refused(stub: Stub) -> None:
    user = await funded(stub, 3)
    assert await refused(stub.Hold(hold(user, 4))) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "insufficient_balance",
    )
    await stub.Credit(
        pb.CreditRequest(transfer_id=f"more:{user}", user_id=user, amount=milli(5), kind=pb.CREDIT_KIND_GRANT)
    )
    # The same id keeps its first answer; a new id goes through.
    assert await refused(stub.Hold(hold(user, 4))) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "insufficient_balance",
    )
    assert await refused(stub.Hold(hold(user, 5))) == (grpc.StatusCode.ABORTED, "idempotency_conflict")
    reply = await stub.Hold(hold(user, 4, n=2))
    assert amounts(reply.balance) == (4000, 4000, 8000)


async def test_the_same_id_with_the_same_body_replays(stub: Stub) -> None:
    user = await funded(stub, 10)
    first = await stub.Hold(hold(user, 4))
    again = await stub.Hold(hold(user, 4))
    assert again.replayed
    assert again.hold.id == first.hold.id
    assert again.hold.status == pb.TRANSFER_STATUS_PENDING
    assert amounts(again.balance) == (6000, 4000, 10_000)


async def test_the_same_id_with_another_body_is_a_conflict(stub: Stub) -> None:
    user = await funded(stub, 10)
    await stub.Hold(hold(user, 4))
    assert await refused(stub.Hold(hold(user, 5))) == (grpc.StatusCode.ABORTED, "idempotency_conflict")
    balance = await stub.GetBalance(pb.GetBalanceRequest(user_id=user))
    assert amounts(balance.balance) == (6000, 4000, 10_000)


async def test_a_captured_hold_cannot_be_released_nor_captured_again(stub: Stub) -> None:
    user = await funded(stub, 10)
    await stub.Hold(hold(user, 4))
    captured = await stub.Capture(
        pb.CaptureRequest(transfer_id=f"cap:{user}", hold_id=f"hold:{user}:1", amount=milli(3))
    )
    assert captured.hold.status == pb.TRANSFER_STATUS_POSTED
    assert amounts(captured.balance) == (7000, 0, 7000)
    release = pb.ReleaseRequest(transfer_id=f"rel:{user}", hold_id=f"hold:{user}:1")
    assert await refused(stub.Release(release)) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "hold_already_captured",
    )
    again = pb.CaptureRequest(transfer_id=f"cap2:{user}", hold_id=f"hold:{user}:1")
    assert await refused(stub.Capture(again)) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "hold_already_captured",
    )


async def test_a_released_hold_gives_the_credits_back_and_cannot_be_captured(stub: Stub) -> None:
    user = await funded(stub, 10)
    await stub.Hold(hold(user, 4))
    released = await stub.Release(pb.ReleaseRequest(transfer_id=f"rel:{user}", hold_id=f"hold:{user}:1"))
    assert released.hold.status == pb.TRANSFER_STATUS_VOIDED
    assert amounts(released.balance) == (10_000, 0, 10_000)
    replay = await stub.Release(pb.ReleaseRequest(transfer_id=f"rel:{user}", hold_id=f"hold:{user}:1"))
    assert replay.replayed
    capture = pb.CaptureRequest(transfer_id=f"cap:{user}", hold_id=f"hold:{user}:1")
    assert await refused(stub.Capture(capture)) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "hold_already_released",
    )


async def test_capture_of_more_than_the_hold_and_of_no_hold_are_refused(stub: Stub) -> None:
    user = await funded(stub, 10)
    await stub.Hold(hold(user, 4))
    over = pb.CaptureRequest(transfer_id=f"cap:{user}", hold_id=f"hold:{user}:1", amount=milli(5))
    assert await refused(stub.Capture(over)) == (grpc.StatusCode.FAILED_PRECONDITION, "capture_exceeds_hold")
    missing = pb.CaptureRequest(transfer_id=f"cap:{user}:x", hold_id=f"hold:{user}:404")
    assert await refused(stub.Capture(missing)) == (grpc.StatusCode.NOT_FOUND, "hold_not_found")


async def test_debits_refunds_and_their_refusals(stub: Stub) -> None:
    user = await funded(stub, 10)
    debit = pb.DebitRequest(transfer_id=f"debit:{user}", user_id=user, amount=milli(6))
    first = await stub.Debit(debit)
    assert first.transfer.status == pb.TRANSFER_STATUS_POSTED
    assert amounts(first.balance) == (4000, 0, 4000)
    again = await stub.Debit(debit)
    assert again.replayed
    assert again.transfer.id == first.transfer.id
    assert amounts(again.balance) == (4000, 0, 4000)
    over = pb.DebitRequest(transfer_id=f"debit:{user}:2", user_id=user, amount=milli(5))
    assert await refused(stub.Debit(over)) == (grpc.StatusCode.FAILED_PRECONDITION, "insufficient_balance")
    negative = pb.DebitRequest(
        transfer_id=f"debit:{user}:3", user_id=user, amount=common_pb2.Credits(milli=-5)
    )
    assert await refused(stub.Debit(negative)) == (grpc.StatusCode.INVALID_ARGUMENT, "invalid_amount")

    refund = await stub.Refund(
        pb.RefundRequest(transfer_id=f"refund:{user}", original_transfer_id=f"debit:{user}", amount=milli(2))
    )
    assert refund.refundable_remaining.milli == 4000
    assert amounts(refund.balance) == (6000, 0, 6000)
    too_much = pb.RefundRequest(
        transfer_id=f"refund:{user}:2", original_transfer_id=f"debit:{user}", amount=milli(5)
    )
    assert await refused(stub.Refund(too_much)) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "refund_exceeds_remaining",
    )
    nothing = pb.RefundRequest(
        transfer_id=f"refund:{user}:3", original_transfer_id="debit:none", amount=milli(1)
    )
    assert await refused(stub.Refund(nothing)) == (grpc.StatusCode.NOT_FOUND, "transfer_not_found")


async def new_order(stub: Stub, minor: int = 10_000) -> tuple[str, pb.CreateRechargeOrderRequest]:
    """A fresh user's pending order of `minor` fen for 10 credits a yuan, and a 5-credit bonus."""
    user = f"u-{uuid.uuid4().hex[:10]}"
    request = pb.CreateRechargeOrderRequest(
        order_id=f"ro-{user}",
        user_id=user,
        method="wechatpay",
        provider="wechatpay",
        amount=cny(minor),
        paid_credits=milli(minor // 10),
        bonus_credits=milli(5),
        catalog_version=3,
    )
    created = await stub.CreateRechargeOrder(request)
    assert created.order.status == pb.RECHARGE_ORDER_STATUS_PENDING
    assert not created.replayed
    return user, request


async def test_a_recharge_order_replays_its_body_and_belongs_to_its_user(stub: Stub) -> None:
    user, request = await new_order(stub)
    again = await stub.CreateRechargeOrder(request)
    assert again.replayed
    assert (again.order.id, again.order.user_id, again.order.amount) == (request.order_id, user, cny(10_000))
    other = pb.CreateRechargeOrderRequest()
    other.CopyFrom(request)
    other.amount.minor = 20_000
    assert await refused(stub.CreateRechargeOrder(other)) == (grpc.StatusCode.ABORTED, "idempotency_conflict")

    attached = await stub.AttachRechargeCheckout(
        pb.AttachRechargeCheckoutRequest(
            order_id=request.order_id, provider_checkout_id="wx-prepay", pay_url="weixin://x"
        )
    )
    assert (attached.order.provider_checkout_id, attached.order.pay_url) == ("wx-prepay", "weixin://x")
    mine = await stub.GetRechargeOrder(pb.GetRechargeOrderRequest(order_id=request.order_id, user_id=user))
    assert mine.order.pay_url == "weixin://x"
    theirs = pb.GetRechargeOrderRequest(order_id=request.order_id, user_id="u-someone-else")
    assert await refused(stub.GetRechargeOrder(theirs)) == (grpc.StatusCode.NOT_FOUND, "order_not_found")
    missing = pb.GetRechargeOrderRequest(order_id="ro-none")
    assert await refused(stub.GetRechargeOrder(missing)) == (grpc.StatusCode.NOT_FOUND, "order_not_found")


async def test_a_recharge_order_credits_paid_and_bonus_exactly_once(stub: Stub) -> None:
    user, request = await new_order(stub)
    # The provider's transaction id is unique across the ledger's database, which other suites share.
    transaction = f"wx-{request.order_id}"
    wrong = pb.CompleteRechargeOrderRequest(
        order_id=request.order_id, provider_transaction_id=transaction, paid=cny(1)
    )
    assert await refused(stub.CompleteRechargeOrder(wrong)) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "amount_mismatch",
    )
    still = await stub.GetRechargeOrder(pb.GetRechargeOrderRequest(order_id=request.order_id))
    assert still.order.status == pb.RECHARGE_ORDER_STATUS_PENDING

    paid = pb.CompleteRechargeOrderRequest(
        order_id=request.order_id, provider_transaction_id=transaction, paid=cny(10_000)
    )
    done = await stub.CompleteRechargeOrder(paid)
    assert not done.already_completed
    assert done.order.status == pb.RECHARGE_ORDER_STATUS_COMPLETED
    assert amounts(done.balance) == (1_005_000, 0, 1_005_000)
    twice = await stub.CompleteRechargeOrder(paid)
    assert twice.already_completed
    assert amounts(twice.balance) == (1_005_000, 0, 1_005_000)
    balance = await stub.GetBalance(pb.GetBalanceRequest(user_id=user))
    assert amounts(balance.balance) == (1_005_000, 0, 1_005_000)
    unknown = pb.CompleteRechargeOrderRequest(
        order_id="ro-none", provider_transaction_id="wx-9", paid=cny(10_000)
    )
    assert await refused(stub.CompleteRechargeOrder(unknown)) == (
        grpc.StatusCode.NOT_FOUND,
        "order_not_found",
    )


async def test_pending_orders_are_listed_by_provider_until_completed(stub: Stub) -> None:
    _, request = await new_order(stub)
    later = Timestamp()
    later.FromDatetime(datetime.now(UTC) + timedelta(minutes=1))

    async def pending(provider: str) -> list[str]:
        ids: list[str] = []
        page = common_pb2.PageRequest(limit=100)
        while True:
            reply = await stub.ListPendingRechargeOrders(
                pb.ListPendingRechargeOrdersRequest(page=page, created_before=later, provider=provider)
            )
            ids += [o.id for o in reply.orders]
            if not reply.page.next_cursor:
                return ids
            page.cursor = reply.page.next_cursor

    assert request.order_id in await pending("wechatpay")
    assert request.order_id not in await pending("alipay")
    await stub.CompleteRechargeOrder(
        pb.CompleteRechargeOrderRequest(
            order_id=request.order_id, provider_transaction_id="wx-2", paid=cny(10_000)
        )
    )
    assert request.order_id not in await pending("wechatpay")


async def test_a_recorded_callback_answers_its_id_and_outcome(stub: Stub) -> None:
    _, request = await new_order(stub)
    recorded = await stub.RecordCallback(
        pb.RecordCallbackRequest(
            callback_id=f"cb-{request.order_id}",
            provider="wechatpay",
            provider_event_id="evt-1",
            order_id=request.order_id,
            verified=False,
            outcome=pb.CALLBACK_OUTCOME_REJECTED,
            reason="bad signature",
            amount=cny(10_000),
            payload_json="{}",
        )
    )
    assert (recorded.callback.id, recorded.callback.outcome) == (
        f"cb-{request.order_id}",
        pb.CALLBACK_OUTCOME_REJECTED,
    )
