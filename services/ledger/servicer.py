"""gRPC transport for the ledger service: protobuf in, a domain call, protobuf out."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, TypeAlias

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy.ext.asyncio import AsyncSession

from atelier.common.v1 import common_pb2
from atelier.ledger.v1 import ledger_pb2 as pb
from atelier.ledger.v1 import ledger_pb2_grpc
from kit.errors import InvalidArgument
from kit.money import Credits, Money, MoneyParseError
from kit.outbox import Outbox
from kit.service import Runtime
from services.ledger import service as svc
from services.ledger.models import outbox as outbox_table
from services.ledger.service import FastLane, Kind, Ledger, Reference
from services.ledger.settings import expiry_grace

Context: TypeAlias = grpc.aio.ServicerContext


# -- protobuf <-> domain ------------------------------------------------------------------------------


def _enum_name(enum: type, prefix: str, value: int) -> str:
    name: str = enum.Name(value)  # type: ignore[attr-defined]
    return name.removeprefix(prefix).lower()


def _enum_value(enum: Any, prefix: str, name: str) -> Any:
    return enum.Value(f"{prefix}{name.upper()}")


def _ts(value: datetime | None) -> Timestamp | None:
    if value is None:
        return None
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


def _from_ts(message: Timestamp) -> datetime:
    return message.ToDatetime(tzinfo=UTC)


def _credits(message: common_pb2.Credits) -> Credits:
    return Credits(int(message.milli))


def _credits_pb(value: Credits) -> common_pb2.Credits:
    return common_pb2.Credits(milli=value.milli)


def _money(message: common_pb2.Money, field: str) -> Money:
    try:
        return Money(int(message.minor), message.currency.upper())
    except MoneyParseError as exc:
        raise InvalidArgument(str(exc), code="invalid_currency", field=field) from exc


def _money_pb(value: Money | None) -> common_pb2.Money | None:
    return common_pb2.Money(minor=value.minor, currency=value.currency) if value is not None else None


def _reference(message: pb.Reference) -> Reference:
    if message.type == pb.REFERENCE_TYPE_UNSPECIFIED:
        if message.id:
            raise InvalidArgument("a reference id needs a type", code="invalid_argument", field="reference")
        return Reference()
    return Reference(_enum_name(pb.ReferenceType, "REFERENCE_TYPE_", message.type), message.id)


def _reference_pb(value: Reference) -> pb.Reference:
    if not value.type:
        return pb.Reference()
    return pb.Reference(type=_enum_value(pb.ReferenceType, "REFERENCE_TYPE_", value.type), id=value.id)


def transfer_pb(t: svc.Transfer) -> pb.Transfer:
    return pb.Transfer(
        id=t.id,
        kind=_enum_value(pb.TransferKind, "TRANSFER_KIND_", t.kind),
        debit_account=t.debit_account,
        credit_account=t.credit_account,
        amount=_credits_pb(t.amount),
        status=_enum_value(pb.TransferStatus, "TRANSFER_STATUS_", t.status),
        reference=_reference_pb(t.reference),
        metadata=t.metadata,
        trace_id=t.trace_id,
        created_at=_ts(t.created_at),
        linked_transfer_id=t.linked_transfer_id,
        user_id=t.user_id,
        expires_at=_ts(t.expires_at),
        resolved_at=_ts(t.resolved_at),
        reason=t.reason,
        actor_id=t.actor_id,
    )


def balance_pb(b: svc.Balance) -> pb.Balance:
    return pb.Balance(
        user_id=b.user_id,
        available=_credits_pb(b.available),
        held=_credits_pb(b.held),
        posted=_credits_pb(b.posted),
        version=b.version,
        updated_at=_ts(b.updated_at),
    )


def order_pb(o: svc.RechargeOrder) -> pb.RechargeOrder:
    return pb.RechargeOrder(
        id=o.id,
        user_id=o.user_id,
        method=o.method,
        provider=o.provider,
        amount=_money_pb(o.amount),
        plan_code=o.plan_code,
        paid_credits=_credits_pb(o.paid_credits),
        bonus_credits=_credits_pb(o.bonus_credits),
        catalog_version=o.catalog_version,
        status=_enum_value(pb.RechargeOrderStatus, "RECHARGE_ORDER_STATUS_", o.status),
        provider_checkout_id=o.provider_checkout_id,
        pay_url=o.pay_url,
        provider_transaction_id=o.provider_transaction_id,
        paid_amount=_money_pb(o.paid_amount),
        failure_reason=o.failure_reason,
        credit_transfer_id=o.credit_transfer_id,
        bonus_transfer_id=o.bonus_transfer_id,
        created_at=_ts(o.created_at),
        expires_at=_ts(o.expires_at),
        completed_at=_ts(o.completed_at),
        trace_id=o.trace_id,
    )


def callback_pb(c: svc.CallbackLog) -> pb.CallbackLog:
    return pb.CallbackLog(
        id=c.id,
        provider=c.provider,
        provider_event_id=c.provider_event_id,
        order_id=c.order_id,
        user_id=c.user_id,
        verified=c.verified,
        outcome=_enum_value(pb.CallbackOutcome, "CALLBACK_OUTCOME_", c.outcome),
        reason=c.reason,
        provider_status=c.provider_status,
        provider_transaction_id=c.provider_transaction_id,
        amount=_money_pb(c.amount),
        payload_json=c.payload_json,
        headers=c.headers,
        remote_addr=c.remote_addr,
        received_at=_ts(c.received_at),
        trace_id=c.trace_id,
    )


class LedgerServicer(ledger_pb2_grpc.LedgerServiceServicer):
    def __init__(self, runtime: Runtime, ledger: Ledger | None = None) -> None:
        self.runtime = runtime
        self.ledger = ledger or Ledger(runtime.outbox or Outbox(outbox_table))
        # Holds and captures, the hot path, share commits; the general path runs alone when needed.
        self.fast = FastLane(self.ledger, runtime.db.connect, on_commit=self._notify)

    def _notify(self) -> None:
        if self.runtime.relay is not None:
            self.runtime.relay.notify()

    @asynccontextmanager
    async def _unit(self) -> AsyncIterator[AsyncSession]:
        """One transaction; after commit, the outbox relay is told there is something to send."""
        async with self.runtime.db.transaction() as session:
            yield session
        self._notify()

    @asynccontextmanager
    async def _transfer_unit(self) -> AsyncIterator[AsyncSession]:
        """A unit for a transfer that may be refused for good: the refused id is then recorded."""
        try:
            async with self._unit() as session:
                yield session
        except svc.TransferRefused as refused:
            async with self._unit() as session:
                await self.ledger.record_failure(session, refused)
            raise

    # .. transfers ..................................................................................

    async def Credit(self, request: pb.CreditRequest, context: Context) -> pb.CreditResponse:
        if request.kind == pb.CREDIT_KIND_UNSPECIFIED:
            raise InvalidArgument("kind is required", code="invalid_argument", field="kind")
        async with self._unit() as session:
            result = await self.ledger.credit(
                session,
                transfer_id=request.transfer_id,
                user_id=request.user_id,
                amount=_credits(request.amount),
                kind=Kind(_enum_name(pb.CreditKind, "CREDIT_KIND_", request.kind)),
                reference=_reference(request.reference),
                reason=request.reason,
                actor_id=request.actor_id,
                metadata=dict(request.metadata),
            )
        return pb.CreditResponse(
            transfer=transfer_pb(result.transfer),
            balance=balance_pb(result.balance),
            replayed=result.replayed,
        )

    async def Hold(self, request: pb.HoldRequest, context: Context) -> pb.HoldResponse:
        expiry = request.WhichOneof("expiry")
        plan = self.ledger.plan_hold(
            transfer_id=request.transfer_id,
            user_id=request.user_id,
            amount=_credits(request.amount),
            expires_at=_from_ts(request.expires_at) if expiry == "expires_at" else None,
            ttl=request.ttl.ToTimedelta() if expiry == "ttl" else None,
            reference=_reference(request.reference),
            metadata=dict(request.metadata),
        )
        result = await self.fast.hold(plan)
        if result is None:
            async with self._transfer_unit() as session:
                result = await self.ledger.hold_general(session, plan)
        return pb.HoldResponse(
            hold=transfer_pb(result.transfer), balance=balance_pb(result.balance), replayed=result.replayed
        )

    async def Capture(self, request: pb.CaptureRequest, context: Context) -> pb.CaptureResponse:
        plan = self.ledger.plan_capture(
            transfer_id=request.transfer_id,
            hold_id=request.hold_id,
            amount=_credits(request.amount) if request.HasField("amount") else None,
            metadata=dict(request.metadata),
        )
        result = await self.fast.capture(plan)
        if result is None:
            async with self._unit() as session:
                result = await self.ledger.capture_general(session, plan)
        return pb.CaptureResponse(
            capture=transfer_pb(result.transfer),
            hold=transfer_pb(result.hold) if result.hold else None,
            balance=balance_pb(result.balance),
            replayed=result.replayed,
        )

    async def Release(self, request: pb.ReleaseRequest, context: Context) -> pb.ReleaseResponse:
        async with self._unit() as session:
            result = await self.ledger.release(
                session, transfer_id=request.transfer_id, hold_id=request.hold_id, reason=request.reason
            )
        return pb.ReleaseResponse(
            release=transfer_pb(result.transfer),
            hold=transfer_pb(result.hold) if result.hold else None,
            balance=balance_pb(result.balance),
            replayed=result.replayed,
        )

    async def Debit(self, request: pb.DebitRequest, context: Context) -> pb.DebitResponse:
        async with self._transfer_unit() as session:
            result = await self.ledger.debit(
                session,
                transfer_id=request.transfer_id,
                user_id=request.user_id,
                amount=_credits(request.amount),
                reference=_reference(request.reference),
                metadata=dict(request.metadata),
            )
        return pb.DebitResponse(
            transfer=transfer_pb(result.transfer),
            balance=balance_pb(result.balance),
            replayed=result.replayed,
        )

    async def Refund(self, request: pb.RefundRequest, context: Context) -> pb.RefundResponse:
        async with self._unit() as session:
            result = await self.ledger.refund(
                session,
                transfer_id=request.transfer_id,
                original_transfer_id=request.original_transfer_id,
                amount=_credits(request.amount),
                reason=request.reason,
                metadata=dict(request.metadata),
            )
        return pb.RefundResponse(
            transfer=transfer_pb(result.transfer),
            refundable_remaining=_credits_pb(result.refundable_remaining or Credits(0)),
            balance=balance_pb(result.balance),
            replayed=result.replayed,
        )

    async def Adjust(self, request: pb.AdjustRequest, context: Context) -> pb.AdjustResponse:
        async with self._transfer_unit() as session:
            result = await self.ledger.adjust(
                session,
                transfer_id=request.transfer_id,
                user_id=request.user_id,
                amount=_credits(request.amount),
                reason=request.reason,
                actor_id=request.actor_id,
            )
        return pb.AdjustResponse(
            transfer=transfer_pb(result.transfer),
            balance=balance_pb(result.balance),
            replayed=result.replayed,
        )

    async def GetTransfer(self, request: pb.GetTransferRequest, context: Context) -> pb.GetTransferResponse:
        async with self._unit() as session:
            transfer = await self.ledger.get_transfer(session, request.transfer_id)
        return pb.GetTransferResponse(transfer=transfer_pb(transfer))

    # .. reads ......................................................................................

    async def GetBalance(self, request: pb.GetBalanceRequest, context: Context) -> pb.GetBalanceResponse:
        async with self._unit() as session:
            balance = await self.ledger.balance(session, request.user_id)
        return pb.GetBalanceResponse(balance=balance_pb(balance))

    async def ListRecords(self, request: pb.ListRecordsRequest, context: Context) -> pb.ListRecordsResponse:
        types = [_enum_name(pb.RecordType, "RECORD_TYPE_", t) for t in request.types if t]
        async with self._unit() as session:
            records, cursor = await self.ledger.records(
                session,
                user_id=request.user_id,
                types=types,
                cursor=request.page.cursor,
                limit=request.page.limit,
            )
        out = []
        for record in records:
            item = pb.Record(
                id=record.id,
                type=_enum_value(pb.RecordType, "RECORD_TYPE_", record.type),
                occurred_at=_ts(record.occurred_at),
                delta=_credits_pb(record.delta),
            )
            if record.transfer is not None:
                item.transfer.CopyFrom(transfer_pb(record.transfer))
            if record.callback is not None:
                item.callback.CopyFrom(callback_pb(record.callback))
            out.append(item)
        return pb.ListRecordsResponse(records=out, page=common_pb2.PageInfo(next_cursor=cursor))

    async def GetUsage(self, request: pb.GetUsageRequest, context: Context) -> pb.GetUsageResponse:
        group_by = request.group_by or pb.USAGE_GROUP_BY_DAY
        async with self._unit() as session:
            usage = await self.ledger.usage(
                session,
                user_id=request.user_id,
                from_time=_from_ts(request.from_time) if request.HasField("from_time") else None,
                to_time=_from_ts(request.to_time) if request.HasField("to_time") else None,
                group_by=_enum_name(pb.UsageGroupBy, "USAGE_GROUP_BY_", group_by),
                time_zone=request.time_zone,
            )
        return pb.GetUsageResponse(
            buckets=[
                pb.UsageBucket(key=b.key, spend=_credits_pb(b.spend), count=b.count) for b in usage.buckets
            ],
            total=_credits_pb(usage.total),
        )

    # .. recharge orders ............................................................................

    async def CreateRechargeOrder(
        self, request: pb.CreateRechargeOrderRequest, context: Context
    ) -> pb.CreateRechargeOrderResponse:
        async with self._unit() as session:
            order, replayed = await self.ledger.create_order(
                session,
                order_id=request.order_id,
                user_id=request.user_id,
                method=request.method,
                provider=request.provider,
                amount=_money(request.amount, "amount"),
                plan_code=request.plan_code,
                paid_credits=_credits(request.paid_credits),
                bonus_credits=_credits(request.bonus_credits),
                catalog_version=request.catalog_version,
                expires_at=_from_ts(request.expires_at) if request.HasField("expires_at") else None,
            )
        return pb.CreateRechargeOrderResponse(order=order_pb(order), replayed=replayed)

    async def AttachRechargeCheckout(
        self, request: pb.AttachRechargeCheckoutRequest, context: Context
    ) -> pb.AttachRechargeCheckoutResponse:
        async with self._unit() as session:
            order = await self.ledger.attach_checkout(
                session,
                order_id=request.order_id,
                provider_checkout_id=request.provider_checkout_id,
                pay_url=request.pay_url,
            )
        return pb.AttachRechargeCheckoutResponse(order=order_pb(order))

    async def GetRechargeOrder(
        self, request: pb.GetRechargeOrderRequest, context: Context
    ) -> pb.GetRechargeOrderResponse:
        async with self._unit() as session:
            order = await self.ledger.get_order(session, request.order_id, request.user_id)
        return pb.GetRechargeOrderResponse(order=order_pb(order))

    async def CompleteRechargeOrder(
        self, request: pb.CompleteRechargeOrderRequest, context: Context
    ) -> pb.CompleteRechargeOrderResponse:
        paid = _money(request.paid, "paid")
        try:
            async with self._unit() as session:
                result = await self.ledger.complete_order(
                    session,
                    order_id=request.order_id,
                    provider_transaction_id=request.provider_transaction_id,
                    paid=paid,
                    callback_id=request.callback_id,
                )
        except svc.AmountMismatch as mismatch:
            # Refused and rolled back; the refusal itself is kept on the order.
            async with self._unit() as session:
                await self.ledger.record_mismatch(session, order_id=request.order_id, reason=mismatch.message)
            raise
        return pb.CompleteRechargeOrderResponse(
            order=order_pb(result.order),
            already_completed=result.already_completed,
            balance=balance_pb(result.balance),
        )

    async def ListPendingRechargeOrders(
        self, request: pb.ListPendingRechargeOrdersRequest, context: Context
    ) -> pb.ListPendingRechargeOrdersResponse:
        async with self._unit() as session:
            orders, cursor = await self.ledger.pending_orders(
                session,
                created_before=_from_ts(request.created_before)
                if request.HasField("created_before")
                else None,
                provider=request.provider,
                cursor=request.page.cursor,
                limit=request.page.limit,
            )
        return pb.ListPendingRechargeOrdersResponse(
            orders=[order_pb(o) for o in orders], page=common_pb2.PageInfo(next_cursor=cursor)
        )

    # .. callbacks ..................................................................................

    async def RecordCallback(
        self, request: pb.RecordCallbackRequest, context: Context
    ) -> pb.RecordCallbackResponse:
        if request.outcome == pb.CALLBACK_OUTCOME_UNSPECIFIED:
            raise InvalidArgument("outcome is required", code="invalid_argument", field="outcome")
        async with self._unit() as session:
            callback = await self.ledger.record_callback(
                session,
                callback_id=request.callback_id,
                provider=request.provider,
                provider_event_id=request.provider_event_id,
                order_id=request.order_id,
                verified=request.verified,
                outcome=_enum_name(pb.CallbackOutcome, "CALLBACK_OUTCOME_", request.outcome),
                reason=request.reason,
                provider_status=request.provider_status,
                provider_transaction_id=request.provider_transaction_id,
                amount=_money(request.amount, "amount") if request.HasField("amount") else None,
                payload_json=request.payload_json,
                headers=dict(request.headers),
                remote_addr=request.remote_addr,
                received_at=_from_ts(request.received_at) if request.HasField("received_at") else None,
            )
        return pb.RecordCallbackResponse(callback=callback_pb(callback))

    async def ListCallbacks(
        self, request: pb.ListCallbacksRequest, context: Context
    ) -> pb.ListCallbacksResponse:
        outcome = ""
        if request.outcome:
            outcome = _enum_name(pb.CallbackOutcome, "CALLBACK_OUTCOME_", request.outcome)
        async with self._unit() as session:
            found, cursor = await self.ledger.list_callbacks(
                session,
                user_id=request.user_id,
                order_id=request.order_id,
                provider=request.provider,
                outcome=outcome,
                cursor=request.page.cursor,
                limit=request.page.limit,
            )
        return pb.ListCallbacksResponse(
            callbacks=[callback_pb(c) for c in found], page=common_pb2.PageInfo(next_cursor=cursor)
        )

    # .. diagnostics ................................................................................

    async def GetSpendChain(
        self, request: pb.GetSpendChainRequest, context: Context
    ) -> pb.GetSpendChainResponse:
        async with self._unit() as session:
            chain = await self.ledger.spend_chain(session, request.id)
        return pb.GetSpendChainResponse(
            reference=_reference_pb(chain.reference),
            transfers=[transfer_pb(t) for t in chain.transfers],
            order=order_pb(chain.order) if chain.order else None,
            callbacks=[callback_pb(c) for c in chain.callbacks],
            trace_ids=chain.trace_ids,
        )

    async def Reconcile(self, request: pb.ReconcileRequest, context: Context) -> pb.ReconcileResponse:
        async with self.runtime.db.transaction() as session:
            report = await self.ledger.reconcile(session, expiry_grace=expiry_grace(self.runtime.settings))
        return reconcile_pb(report)


def reconcile_pb(report: svc.ReconcileReport) -> pb.ReconcileResponse:
    return pb.ReconcileResponse(
        violations=[
            pb.Violation(invariant=v.invariant, subject=v.subject, detail=v.detail) for v in report.violations
        ],
        accounts_checked=report.accounts_checked,
        transfers_checked=report.transfers_checked,
        orders_checked=report.orders_checked,
        checked_at=_ts(report.checked_at),
    )
