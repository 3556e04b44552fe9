"""From a provider's callback (or a provider query) to the ledger, exactly once.

Every callback is verified, settled against the ledger's order, and logged through the ledger's
`RecordCallback` whatever the outcome. Exactly-once crediting is the ledger's (the order's state,
under a row lock); here, deliveries for one order are also serialized in-process and settled events
remembered, so duplicate and concurrent deliveries cost one `CompleteRechargeOrder` at most.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from atelier.common.v1 import common_pb2
from atelier.ledger.v1 import ledger_pb2
from atelier.ledger.v1.ledger_pb2_grpc import LedgerServiceStub
from gateway.payments.base import (
    Ack,
    Answer,
    QueryResult,
    Rejected,
    Verified,
    logged_headers,
    payload_json,
)
from gateway.payments.registry import PaymentGateway
from kit.errors import DomainError, FailedPrecondition, NotFound
from kit.grpc_client import domain_error
from kit.money import Money

if TYPE_CHECKING:
    from atelier.ledger.v1.ledger_pb2_grpc import LedgerServiceAsyncStub

log = logging.getLogger(__name__)

Outcome = ledger_pb2.CallbackOutcome
_SETTLED_EVENTS = 10_000


def ledger_stub(channel: Any) -> LedgerServiceAsyncStub:
    """The ledger's stub on a `grpc.aio` channel (typed as the async stub)."""
    return cast("LedgerServiceAsyncStub", LedgerServiceStub(channel))


@dataclass(frozen=True, slots=True)
class Settlement:
    outcome: ledger_pb2.CallbackOutcome.ValueType
    reason: str
    order: ledger_pb2.RechargeOrder | None = None


@dataclass
class _OrderLock:
    lock: asyncio.Lock
    users: int = 0


class PaymentProcessor:
    def __init__(
        self, payments: PaymentGateway, ledger: LedgerServiceAsyncStub, clock: Callable[[], float] = time.time
    ) -> None:
        self.payments = payments
        self.ledger = ledger
        self.clock = clock
        self._locks: dict[str, _OrderLock] = {}
        # (provider, event id) of deliveries already settled for good: replays skip the ledger.
        self._settled: OrderedDict[tuple[str, str], Settlement] = OrderedDict()

    @contextlib.asynccontextmanager
    async def _order_lock(self, order_id: str) -> AsyncIterator[None]:
        entry = self._locks.setdefault(order_id, _OrderLock(asyncio.Lock()))
        entry.users += 1
        try:
            async with entry.lock:
                yield
        finally:
            entry.users -= 1
            if entry.users == 0:
                del self._locks[order_id]

    # --- callbacks ----------------------------------------------------------------------------

    async def handle_callback(
        self, provider_name: str, body: bytes, headers: Mapping[str, str], remote_addr: str = ""
    ) -> Answer:
        """Verify, settle and log one delivery; the answer is what this provider expects."""
        provider = self.payments.get(provider_name)
        received = self.clock()
        verdict = provider.verify(body, headers, received)
        callback_id = f"cb_{uuid.uuid4().hex}"
        if isinstance(verdict, Rejected):
            log.warning(
                "payment callback rejected",
                extra={
                    "provider": provider_name,
                    "reason": verdict.reason,
                    "order_id": verdict.order_id,
                    "authentic": verdict.authentic,
                },
            )
            settlement = Settlement(Outcome.CALLBACK_OUTCOME_REJECTED, verdict.reason)
            ack = Ack.ACCEPTED if verdict.authentic else Ack.UNAUTHENTIC
        else:
            async with self._order_lock(verdict.order_id):
                settlement = await self._settle_callback(verdict, callback_id)
            ack = Ack.RETRY if settlement.outcome == Outcome.CALLBACK_OUTCOME_ERROR else Ack.ACCEPTED
        request = ledger_pb2.RecordCallbackRequest(
            callback_id=callback_id,
            provider=provider_name,
            provider_event_id=verdict.event_id,
            order_id=verdict.order_id,
            verified=verdict.authentic,
            outcome=settlement.outcome,
            reason=settlement.reason,
            provider_status=verdict.provider_status,
            provider_transaction_id=verdict.transaction_id if isinstance(verdict, Verified) else "",
            payload_json=payload_json(verdict.payload),
            headers=logged_headers(headers),
            remote_addr=remote_addr,
            received_at=_timestamp(received),
        )
        if isinstance(verdict, Verified) and verdict.amount is not None:
            request.amount.CopyFrom(_money_pb(verdict.amount))
        try:
            await self.ledger.RecordCallback(request)
        except grpc.aio.AioRpcError as exc:
            # Not logged means not done: ask the provider to deliver again (the retry is a duplicate).
            log.error("could not record a payment callback: %s", exc.code().name)
            ack = Ack.RETRY
        log.info(
            "payment callback",
            extra={
                "provider": provider_name,
                "order_id": verdict.order_id,
                "outcome": Outcome.Name(settlement.outcome),
                "reason": settlement.reason,
            },
        )
        return provider.answer(ack, settlement.reason)

    async def _settle_callback(self, verdict: Verified, callback_id: str) -> Settlement:
        if not verdict.order_id:
            # e.g. a Stripe event type this endpoint does not act on.
            return Settlement(
                Outcome.CALLBACK_OUTCOME_IGNORED, f"not about an order ({verdict.provider_status})"
            )
        key = (verdict.provider, verdict.event_id)
        if verdict.event_id and key in self._settled:
            first = self._settled[key]
            if first.outcome in (Outcome.CALLBACK_OUTCOME_CREDITED, Outcome.CALLBACK_OUTCOME_DUPLICATE):
                return Settlement(Outcome.CALLBACK_OUTCOME_DUPLICATE, "event already processed", first.order)
        settlement = await self._settle(
            verdict.provider,
            verdict.order_id,
            QueryResult(verdict.paid, verdict.provider_status, verdict.transaction_id, verdict.amount),
            callback_id,
        )
        if verdict.event_id and settlement.outcome != Outcome.CALLBACK_OUTCOME_ERROR:
            self._settled[key] = settlement
            while len(self._settled) > _SETTLED_EVENTS:
                self._settled.popitem(last=False)
        return settlement

    async def _settle(self, provider: str, order_id: str, claim: QueryResult, callback_id: str) -> Settlement:
        """Check the provider's claim against our order, then complete it through the ledger."""
        try:
            reply = await self.ledger.GetRechargeOrder(ledger_pb2.GetRechargeOrderRequest(order_id=order_id))
        except grpc.aio.AioRpcError as exc:
            error = domain_error(exc)
            if isinstance(error, NotFound):
                return Settlement(Outcome.CALLBACK_OUTCOME_REJECTED, "unknown order")
            return Settlement(Outcome.CALLBACK_OUTCOME_ERROR, f"ledger unavailable: {error.code}")
        order = reply.order
        if order.provider != provider:
            return Settlement(Outcome.CALLBACK_OUTCOME_REJECTED, f"order belongs to {order.provider}", order)
        expected = Money(order.amount.minor, order.amount.currency)
        if claim.amount != expected:
            paid = "nothing" if claim.amount is None else str(claim.amount)
            return Settlement(
                Outcome.CALLBACK_OUTCOME_REJECTED, f"amount mismatch: paid {paid}, order is {expected}", order
            )
        if not claim.paid:
            return Settlement(
                Outcome.CALLBACK_OUTCOME_IGNORED, f"not a payment ({claim.provider_status})", order
            )
        if order.status == ledger_pb2.RECHARGE_ORDER_STATUS_COMPLETED:
            return Settlement(Outcome.CALLBACK_OUTCOME_DUPLICATE, "order already credited", order)
        try:
            completed = await self.ledger.CompleteRechargeOrder(
                ledger_pb2.CompleteRechargeOrderRequest(
                    order_id=order_id,
                    provider_transaction_id=claim.transaction_id,
                    paid=_money_pb(expected),
                    callback_id=callback_id,
                ),
            )
        except grpc.aio.AioRpcError as exc:
            error = domain_error(exc)
            if isinstance(error, (FailedPrecondition, NotFound)) or _is_business(error):
                return Settlement(Outcome.CALLBACK_OUTCOME_REJECTED, f"ledger refused: {error.code}", order)
            return Settlement(Outcome.CALLBACK_OUTCOME_ERROR, f"ledger unavailable: {error.code}", order)
        if completed.already_completed:
            return Settlement(Outcome.CALLBACK_OUTCOME_DUPLICATE, "order already credited", completed.order)
        return Settlement(Outcome.CALLBACK_OUTCOME_CREDITED, "credited", completed.order)

    # --- reconciler ---------------------------------------------------------------------------

    async def settle_query(self, order: ledger_pb2.RechargeOrder, result: QueryResult) -> Settlement:
        """Complete an order the provider says is paid, through the same checks and lock as callbacks."""
        async with self._order_lock(order.id):
            return await self._settle(order.provider, order.id, result, callback_id="")


def _is_business(error: DomainError) -> bool:
    return error.code in {"amount_mismatch", "currency_mismatch", "order_not_pending", "order_expired"}


def _money_pb(money: Money) -> common_pb2.Money:
    return common_pb2.Money(minor=money.minor, currency=money.currency)


def _timestamp(unix: float) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(datetime.fromtimestamp(unix, UTC))
    return stamp
