"""The one in-test fake of the LedgerService: every RPC some test's code under test calls (credits, holds,
capture/release, debits and refunds, recharge orders, the callback log), in memory, following the contract
that `test_contract_ledger.py` checks against the real servicer: domain errors with their codes, ids that
replay the same body and refuse another, balances that never go below zero.

Tests read and arrange its state directly: `posted` (a user's posted credits), `holds`, `transfers`,
`orders`, `callbacks`, and the call logs."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TypeAlias

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from atelier.common.v1 import common_pb2
from atelier.events.v1 import events_pb2
from atelier.ledger.v1 import ledger_pb2, ledger_pb2_grpc
from kit.errors import Conflict, DomainError, FailedPrecondition, InvalidArgument, NotFound
from tests.fakes.catalog import PROVIDER_OF
from tests.fakes.gate import Gate

Context: TypeAlias = grpc.aio.ServicerContext
_HOLD_STATUS = {
    "pending": ledger_pb2.TRANSFER_STATUS_PENDING,
    "posted": ledger_pb2.TRANSFER_STATUS_POSTED,
    "voided": ledger_pb2.TRANSFER_STATUS_VOIDED,
}


def _now_pb(delta: timedelta = timedelta()) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(datetime.now(UTC) + delta)
    return stamp


def _credits(milli: int) -> common_pb2.Credits:
    return common_pb2.Credits(milli=milli)


@dataclass
class FakeHold:
    user_id: str
    amount: int
    status: str = "pending"  # pending | posted | voided
    captured: int = 0


class FakeLedger(ledger_pb2_grpc.LedgerServiceServicer):
    """Balances per user (posted minus pending holds is available), transfers kept by id with the body
    they were made with, recharge orders completed once."""

    def __init__(self) -> None:
        self.posted: dict[str, int] = {}
        self.holds: dict[str, FakeHold] = {}
        self.transfers: dict[str, ledger_pb2.Transfer] = {}
        self.bodies: dict[str, bytes] = {}
        self.failed: dict[str, DomainError] = {}
        self.refunded: Counter[str] = Counter()
        self.calls: Counter[str] = Counter()
        self.releases: list[str] = []
        self.captures: list[tuple[str, int]] = []
        self.debit_gate = Gate()
        self.refund_gate = Gate()
        # Recharge orders and the callback log.
        self.orders: dict[str, ledger_pb2.RechargeOrder] = {}
        self.callbacks: list[ledger_pb2.RecordCallbackRequest] = []
        self.complete_calls: list[ledger_pb2.CompleteRechargeOrderRequest] = []
        self.credits: list[str] = []
        self.fail_records = 0

    # -- balances ---------------------------------------------------------------------------------

    def held(self, user_id: str) -> int:
        return sum(h.amount for h in self.holds.values() if h.user_id == user_id and h.status == "pending")

    def available(self, user_id: str) -> int:
        return self.posted.get(user_id, 0) - self.held(user_id)

    def balance(self, user_id: str) -> int:
        return self.available(user_id)

    def _balance_message(self, user_id: str) -> ledger_pb2.Balance:
        return ledger_pb2.Balance(
            user_id=user_id,
            available=_credits(self.available(user_id)),
            held=_credits(self.held(user_id)),
            posted=_credits(self.posted.get(user_id, 0)),
        )

    def of_kind(self, kind: ledger_pb2.TransferKind.ValueType) -> list[ledger_pb2.Transfer]:
        return [t for t in self.transfers.values() if t.kind == kind]

    def _replay(self, transfer_id: str, body: bytes) -> ledger_pb2.Transfer | None:
        """The stored transfer for a replay of the same body; the stored error for a refused one."""
        self._refused_before(transfer_id, body)
        if transfer_id in self.transfers:
            if self.bodies[transfer_id] != body:
                raise Conflict("another body for this transfer id", code="idempotency_conflict")
            return self.transfers[transfer_id]
        return None

    def _refused_before(self, transfer_id: str, body: bytes) -> None:
        """An id refused once stays refused: the same body gets the same error, another a conflict."""
        if transfer_id in self.failed:
            if self.bodies[transfer_id] != body:
                raise Conflict("another body for this transfer id", code="idempotency_conflict")
            raise self.failed[transfer_id]

    def _insufficient(self, transfer_id: str, body: bytes) -> FailedPrecondition:
        error = FailedPrecondition("not enough credits", code="insufficient_balance")
        self.failed[transfer_id] = error
        self.bodies[transfer_id] = body
        return error

    def _record(self, transfer: ledger_pb2.Transfer, body: bytes) -> ledger_pb2.Transfer:
        self.transfers[transfer.id] = transfer
        self.bodies[transfer.id] = body
        return transfer

    def _hold_pb(self, hold_id: str) -> ledger_pb2.Transfer:
        hold = self.holds[hold_id]
        return ledger_pb2.Transfer(
            id=hold_id,
            kind=ledger_pb2.TRANSFER_KIND_HOLD,
            amount=_credits(hold.amount),
            status=_HOLD_STATUS[hold.status],
            user_id=hold.user_id,
        )

    # -- credits ----------------------------------------------------------------------------------

    async def Credit(self, request: ledger_pb2.CreditRequest, context: Context) -> ledger_pb2.CreditResponse:
        body = request.SerializeToString(deterministic=True)
        replayed = self._replay(request.transfer_id, body)
        if replayed is not None:
            return ledger_pb2.CreditResponse(
                transfer=replayed, balance=self._balance_message(request.user_id), replayed=True
            )
        if request.kind == ledger_pb2.CREDIT_KIND_UNSPECIFIED:
            raise InvalidArgument("kind must be recharge, bonus or grant", code="invalid_argument")
        if request.amount.milli <= 0:
            raise InvalidArgument("amount must be positive", code="invalid_amount")
        self.posted[request.user_id] = self.posted.get(request.user_id, 0) + request.amount.milli
        transfer = ledger_pb2.Transfer(
            id=request.transfer_id,
            kind=ledger_pb2.TransferKind.Value(
                ledger_pb2.CreditKind.Name(request.kind).replace("CREDIT_KIND_", "TRANSFER_KIND_")
            ),
            credit_account=f"user:{request.user_id}",
            amount=request.amount,
            status=ledger_pb2.TRANSFER_STATUS_POSTED,
            user_id=request.user_id,
        )
        self._record(transfer, body)
        return ledger_pb2.CreditResponse(transfer=transfer, balance=self._balance_message(request.user_id))

    # -- holds ------------------------------------------------------------------------------------

    async def Hold(self, request: ledger_pb2.HoldRequest, context: Context) -> ledger_pb2.HoldResponse:
        body = request.SerializeToString(deterministic=True)
        self._refused_before(request.transfer_id, body)
        if request.transfer_id in self.holds:
            if self.bodies[request.transfer_id] != body:
                raise Conflict("another body under this id", code="idempotency_conflict")
            return ledger_pb2.HoldResponse(
                replayed=True,
                hold=self._hold_pb(request.transfer_id),
                balance=self._balance_message(request.user_id),
            )
        if request.amount.milli <= 0:
            raise InvalidArgument("amount must be positive", code="invalid_amount")
        if request.amount.milli > self.available(request.user_id):
            raise self._insufficient(request.transfer_id, body)
        self.holds[request.transfer_id] = FakeHold(request.user_id, request.amount.milli)
        self.bodies[request.transfer_id] = body
        return ledger_pb2.HoldResponse(
            hold=self._hold_pb(request.transfer_id), balance=self._balance_message(request.user_id)
        )

    def _pending_hold(self, hold_id: str) -> FakeHold:
        hold = self.holds.get(hold_id)
        if hold is None:
            raise NotFound("no such hold", code="hold_not_found")
        if hold.status == "posted":
            raise FailedPrecondition("the hold was already captured", code="hold_already_captured")
        if hold.status == "voided":
            raise FailedPrecondition("the hold was already released", code="hold_already_released")
        return hold

    async def Capture(
        self, request: ledger_pb2.CaptureRequest, context: Context
    ) -> ledger_pb2.CaptureResponse:
        body = request.SerializeToString(deterministic=True)
        replayed = self._replay(request.transfer_id, body)
        if replayed is not None:
            return ledger_pb2.CaptureResponse(
                capture=replayed,
                hold=self._hold_pb(request.hold_id),
                balance=self._balance_message(replayed.user_id),
                replayed=True,
            )
        hold = self._pending_hold(request.hold_id)
        amount = request.amount.milli if request.HasField("amount") else hold.amount
        if amount > hold.amount:
            raise FailedPrecondition("cannot capture more than the hold", code="capture_exceeds_hold")
        self.capture(request.hold_id, amount)
        transfer = self._record(
            ledger_pb2.Transfer(
                id=request.transfer_id,
                kind=ledger_pb2.TRANSFER_KIND_CAPTURE,
                amount=_credits(amount),
                status=ledger_pb2.TRANSFER_STATUS_POSTED,
                linked_transfer_id=request.hold_id,
                user_id=hold.user_id,
            ),
            body,
        )
        return ledger_pb2.CaptureResponse(
            capture=transfer, hold=self._hold_pb(request.hold_id), balance=self._balance_message(hold.user_id)
        )

    async def Release(
        self, request: ledger_pb2.ReleaseRequest, context: Context
    ) -> ledger_pb2.ReleaseResponse:
        body = request.SerializeToString(deterministic=True)
        replayed = self._replay(request.transfer_id, body) if request.transfer_id else None
        if replayed is not None:
            return ledger_pb2.ReleaseResponse(
                release=replayed,
                hold=self._hold_pb(request.hold_id),
                balance=self._balance_message(replayed.user_id),
                replayed=True,
            )
        hold = self._pending_hold(request.hold_id)
        self.release(request.hold_id)
        transfer = ledger_pb2.Transfer(
            id=request.transfer_id,
            kind=ledger_pb2.TRANSFER_KIND_RELEASE,
            amount=_credits(hold.amount),
            status=ledger_pb2.TRANSFER_STATUS_POSTED,
            linked_transfer_id=request.hold_id,
            user_id=hold.user_id,
        )
        if request.transfer_id:
            self._record(transfer, body)
        return ledger_pb2.ReleaseResponse(
            release=transfer, hold=self._hold_pb(request.hold_id), balance=self._balance_message(hold.user_id)
        )

    def release(self, hold_id: str) -> None:
        """Voids a pending hold (a no-op on a settled one), as the ledger's consumers do."""
        hold = self.holds.get(hold_id)
        if hold is None:
            raise NotFound("no such hold", code="hold_not_found")
        if hold.status == "pending":
            hold.status = "voided"
            self.releases.append(hold_id)

    def capture(self, hold_id: str, amount: int) -> None:
        hold = self.holds[hold_id]
        if hold.status == "pending":
            hold.status = "posted"
            hold.captured = amount
            self.posted[hold.user_id] = self.posted.get(hold.user_id, 0) - amount
            self.captures.append((hold_id, amount))

    def settle(self, event: events_pb2.TaskCompleted) -> None:
        """What the real ledger does with `tasks.completed`."""
        if not event.hold_id:
            return
        if event.status == 3:  # SUCCEEDED
            self.capture(event.hold_id, event.charge.milli)
        else:
            self.release(event.hold_id)

    # -- debits and refunds -----------------------------------------------------------------------

    async def Debit(self, request: ledger_pb2.DebitRequest, context: Context) -> ledger_pb2.DebitResponse:
        self.calls["Debit"] += 1
        body = request.SerializeToString(deterministic=True)
        replayed = self._replay(request.transfer_id, body)
        if replayed is not None:
            return ledger_pb2.DebitResponse(
                transfer=replayed, balance=self._balance_message(request.user_id), replayed=True
            )
        if request.amount.milli <= 0:
            raise InvalidArgument("amount must be positive", code="invalid_amount")
        if self.available(request.user_id) < request.amount.milli:
            raise self._insufficient(request.transfer_id, body)
        self.posted[request.user_id] = self.posted.get(request.user_id, 0) - request.amount.milli
        transfer = self._record(
            ledger_pb2.Transfer(
                id=request.transfer_id,
                kind=ledger_pb2.TRANSFER_KIND_DEBIT,
                debit_account=f"user:{request.user_id}",
                credit_account="system:revenue",
                amount=request.amount,
                status=ledger_pb2.TRANSFER_STATUS_POSTED,
                reference=request.reference,
                user_id=request.user_id,
            ),
            body,
        )
        await self.debit_gate.maybe_block()
        return ledger_pb2.DebitResponse(transfer=transfer, balance=self._balance_message(request.user_id))

    async def Refund(self, request: ledger_pb2.RefundRequest, context: Context) -> ledger_pb2.RefundResponse:
        self.calls["Refund"] += 1
        body = request.SerializeToString(deterministic=True)
        replayed = self._replay(request.transfer_id, body)
        original = self.transfers.get(request.original_transfer_id)
        if original is None or original.kind != ledger_pb2.TRANSFER_KIND_DEBIT:
            raise NotFound("no such debit", code="transfer_not_found")
        remaining = original.amount.milli - self.refunded[original.id]
        if replayed is not None:
            return ledger_pb2.RefundResponse(
                transfer=replayed,
                balance=self._balance_message(original.user_id),
                refundable_remaining=_credits(remaining),
                replayed=True,
            )
        if not 0 < request.amount.milli <= remaining:
            raise FailedPrecondition("more than what remains refundable", code="refund_exceeds_remaining")
        self.refunded[original.id] += request.amount.milli
        self.posted[original.user_id] = self.posted.get(original.user_id, 0) + request.amount.milli
        transfer = self._record(
            ledger_pb2.Transfer(
                id=request.transfer_id,
                kind=ledger_pb2.TRANSFER_KIND_REFUND,
                debit_account="system:refunds",
                credit_account=f"user:{original.user_id}",
                amount=request.amount,
                status=ledger_pb2.TRANSFER_STATUS_POSTED,
                reference=original.reference,
                linked_transfer_id=original.id,
                user_id=original.user_id,
            ),
            body,
        )
        await self.refund_gate.maybe_block()
        return ledger_pb2.RefundResponse(
            transfer=transfer,
            balance=self._balance_message(original.user_id),
            refundable_remaining=_credits(remaining - request.amount.milli),
        )

    async def GetBalance(
        self, request: ledger_pb2.GetBalanceRequest, context: Context
    ) -> ledger_pb2.GetBalanceResponse:
        return ledger_pb2.GetBalanceResponse(balance=self._balance_message(request.user_id))

    # -- recharge orders and the callback log -----------------------------------------------------

    def seed_order(
        self,
        order_id: str,
        provider: str,
        minor: int,
        *,
        age: timedelta = timedelta(),
        user_id: str = "u_1",
        checkout_id: str = "",
    ) -> ledger_pb2.RechargeOrder:
        order = ledger_pb2.RechargeOrder(
            id=order_id,
            user_id=user_id,
            method={v: k for k, v in PROVIDER_OF.items()}[provider],
            provider=provider,
            amount=common_pb2.Money(minor=minor, currency="CNY"),
            paid_credits=_credits(minor * 10),
            bonus_credits=_credits(0),
            status=ledger_pb2.RECHARGE_ORDER_STATUS_PENDING,
            provider_checkout_id=checkout_id,
            created_at=_now_pb(-age),
        )
        self.orders[order_id] = order
        return order

    def outcomes(self, order_id: str) -> list[str]:
        return [
            ledger_pb2.CallbackOutcome.Name(c.outcome).removeprefix("CALLBACK_OUTCOME_")
            for c in self.callbacks
            if c.order_id == order_id
        ]

    async def CreateRechargeOrder(
        self, request: ledger_pb2.CreateRechargeOrderRequest, context: Context
    ) -> ledger_pb2.CreateRechargeOrderResponse:
        existing = self.orders.get(request.order_id)
        if existing is not None:
            if existing.user_id != request.user_id or existing.amount != request.amount:
                raise Conflict("order id reused with another body", code="idempotency_conflict")
            return ledger_pb2.CreateRechargeOrderResponse(order=existing, replayed=True)
        order = ledger_pb2.RechargeOrder(
            id=request.order_id,
            user_id=request.user_id,
            method=request.method,
            provider=request.provider,
            amount=request.amount,
            plan_code=request.plan_code,
            paid_credits=request.paid_credits,
            bonus_credits=request.bonus_credits,
            catalog_version=request.catalog_version,
            status=ledger_pb2.RECHARGE_ORDER_STATUS_PENDING,
            created_at=_now_pb(),
            expires_at=request.expires_at,
        )
        self.orders[order.id] = order
        return ledger_pb2.CreateRechargeOrderResponse(order=order)

    async def AttachRechargeCheckout(
        self, request: ledger_pb2.AttachRechargeCheckoutRequest, context: Context
    ) -> ledger_pb2.AttachRechargeCheckoutResponse:
        order = self.orders.get(request.order_id)
        if order is None:
            raise NotFound("no such order", code="order_not_found")
        order.provider_checkout_id = request.provider_checkout_id
        order.pay_url = request.pay_url
        return ledger_pb2.AttachRechargeCheckoutResponse(order=order)

    async def GetRechargeOrder(
        self, request: ledger_pb2.GetRechargeOrderRequest, context: Context
    ) -> ledger_pb2.GetRechargeOrderResponse:
        order = self.orders.get(request.order_id)
        if order is None or (request.user_id and order.user_id != request.user_id):
            raise NotFound("no such order", code="order_not_found")
        return ledger_pb2.GetRechargeOrderResponse(order=order)

    async def CompleteRechargeOrder(
        self, request: ledger_pb2.CompleteRechargeOrderRequest, context: Context
    ) -> ledger_pb2.CompleteRechargeOrderResponse:
        self.complete_calls.append(request)
        order = self.orders.get(request.order_id)
        if order is None:
            raise NotFound("no such order", code="order_not_found")
        if request.paid != order.amount:
            raise FailedPrecondition("paid amount differs from the order", code="amount_mismatch")
        balance = self._balance_message(order.user_id)
        if order.status == ledger_pb2.RECHARGE_ORDER_STATUS_COMPLETED:
            return ledger_pb2.CompleteRechargeOrderResponse(
                order=order, already_completed=True, balance=balance
            )
        # Compare-and-set with no await in between: the one winner credits paid + bonus.
        order.status = ledger_pb2.RECHARGE_ORDER_STATUS_COMPLETED
        order.provider_transaction_id = request.provider_transaction_id
        order.paid_amount.CopyFrom(request.paid)
        order.completed_at.CopyFrom(_now_pb())
        self.credits.append(order.id)
        credited = order.paid_credits.milli + order.bonus_credits.milli
        self.posted[order.user_id] = self.posted.get(order.user_id, 0) + credited
        balance = self._balance_message(order.user_id)
        return ledger_pb2.CompleteRechargeOrderResponse(order=order, already_completed=False, balance=balance)

    async def RecordCallback(
        self, request: ledger_pb2.RecordCallbackRequest, context: Context
    ) -> ledger_pb2.RecordCallbackResponse:
        if self.fail_records > 0:
            self.fail_records -= 1
            # INTERNAL, not retried by the client channel (UNAVAILABLE would be, transparently).
            raise RuntimeError("database is down")
        self.callbacks.append(request)
        return ledger_pb2.RecordCallbackResponse(
            callback=ledger_pb2.CallbackLog(id=request.callback_id, outcome=request.outcome)
        )

    async def ListPendingRechargeOrders(
        self, request: ledger_pb2.ListPendingRechargeOrdersRequest, context: Context
    ) -> ledger_pb2.ListPendingRechargeOrdersResponse:
        before = request.created_before.ToDatetime()
        pending = [
            o
            for o in sorted(self.orders.values(), key=lambda o: o.id)
            if o.status == ledger_pb2.RECHARGE_ORDER_STATUS_PENDING
            and o.created_at.ToDatetime() < before
            and (not request.provider or o.provider == request.provider)
        ]
        start = int(request.page.cursor or 0)
        limit = request.page.limit or 100
        page = pending[start : start + limit]
        cursor = str(start + limit) if start + limit < len(pending) else ""
        return ledger_pb2.ListPendingRechargeOrdersResponse(
            orders=page, page=common_pb2.PageInfo(next_cursor=cursor)
        )
