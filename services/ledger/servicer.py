"""gRPC transport for the ledger service: protobuf in, a domain call, protobuf out."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import is_dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any, TypeAlias, TypeVar

import grpc
from google.protobuf.descriptor import EnumDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
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
from services.ledger.settings import LedgerSettings

Context: TypeAlias = grpc.aio.ServicerContext
T = TypeVar("T")
ResponseT = TypeVar("ResponseT")
MessageT = TypeVar("MessageT", bound=Message)


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


def _optional_ts(message: Message, field: str) -> datetime | None:
    """The timestamp `field` of `message`, None when it is not set."""
    return _from_ts(getattr(message, field)) if message.HasField(field) else None


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


def _prefix(enum: EnumDescriptor) -> str:
    """An enum's value prefix: `TransferKind` → `TRANSFER_KIND_`."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", enum.name).upper() + "_"


def _field_pb(field: Any, value: Any) -> Any:
    """`value` as the protobuf `field` (a field descriptor) holds it."""
    if isinstance(value, list):
        return [_field_pb(field, item) for item in value]
    if field.enum_type is not None:
        return field.enum_type.values_by_name[f"{_prefix(field.enum_type)}{value.upper()}"].number
    if isinstance(value, Reference):
        return _reference_pb(value)
    if isinstance(value, Credits):
        return _credits_pb(value)
    if isinstance(value, Money):
        return _money_pb(value)
    if isinstance(value, datetime):
        return _ts(value)
    if is_dataclass(value):
        return _pb(GetMessageClass(field.message_type), value)
    return value


def _pb(message: type[MessageT], value: object) -> MessageT:
    """A domain record as the ledger message whose fields it has by name: credits, money, times and
    references converted, enums by their lower-case name (`TransferKind` "hold" is
    `TRANSFER_KIND_HOLD`), nested records as their own message (None leaves a field unset)."""
    return message(**{f.name: _field_pb(f, getattr(value, f.name)) for f in message.DESCRIPTOR.fields})


def transfer_pb(t: svc.Transfer) -> pb.Transfer:
    return _pb(pb.Transfer, t)


def balance_pb(b: svc.Balance) -> pb.Balance:
    return _pb(pb.Balance, b)


def order_pb(o: svc.RechargeOrder) -> pb.RechargeOrder:
    return _pb(pb.RechargeOrder, o)


def callback_pb(c: svc.CallbackLog) -> pb.CallbackLog:
    return _pb(pb.CallbackLog, c)


def _answer(
    response: Callable[..., ResponseT], result: svc.TransferResult, made: str = "transfer", **more: Any
) -> ResponseT:
    """A transfer RPC's response: the transfer made (its field named `made`), the balance after it,
    whether it was a replay, and `more`."""
    fields = {made: transfer_pb(result.transfer), "balance": balance_pb(result.balance), **more}
    return response(**fields, replayed=result.replayed)


def _resolved_pb(result: svc.TransferResult) -> pb.Transfer | None:
    """The hold a capture or release resolved."""
    return transfer_pb(result.hold) if result.hold else None


class LedgerServicer(ledger_pb2_grpc.LedgerServiceServicer):
    def __init__(self, runtime: Runtime[LedgerSettings], ledger: Ledger | None = None) -> None:
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

    async def _run(self, call: Callable[[AsyncSession], Awaitable[T]], *, refusable: bool = False) -> T:
        """`call` in one unit; `refusable`: in a `_transfer_unit`, which records an id refused for good."""
        async with self._transfer_unit() if refusable else self._unit() as session:
            return await call(session)

    async def _paged(
        self, query: Callable[..., Awaitable[tuple[list[T], str]]], page: common_pb2.PageRequest
    ) -> tuple[list[T], common_pb2.PageInfo]:
        """One page of a listing: `query(session, cursor=…, limit=…)` in one unit, and where the next
        page starts."""
        items, cursor = await self._run(partial(query, cursor=page.cursor, limit=page.limit))
        return items, common_pb2.PageInfo(next_cursor=cursor)

    # .. transfers ..................................................................................

    async def Credit(self, request: pb.CreditRequest, context: Context) -> pb.CreditResponse:
        if request.kind == pb.CREDIT_KIND_UNSPECIFIED:
            raise InvalidArgument("kind is required", code="invalid_argument", field="kind")
        credit = partial(
            self.ledger.credit,
            transfer_id=request.transfer_id,
            user_id=request.user_id,
            amount=_credits(request.amount),
            kind=Kind(_enum_name(pb.CreditKind, "CREDIT_KIND_", request.kind)),
            reference=_reference(request.reference),
            reason=request.reason,
            actor_id=request.actor_id,
            metadata=dict(request.metadata),
        )
        return _answer(pb.CreditResponse, await self._run(credit))

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
            result = await self._run(partial(self.ledger.hold_general, plan=plan), refusable=True)
        return _answer(pb.HoldResponse, result, "hold")

    async def Capture(self, request: pb.CaptureRequest, context: Context) -> pb.CaptureResponse:
        plan = self.ledger.plan_capture(
            transfer_id=request.transfer_id,
            hold_id=request.hold_id,
            amount=_credits(request.amount) if request.HasField("amount") else None,
            metadata=dict(request.metadata),
        )
        result = await self.fast.capture(plan)
        if result is None:
            result = await self._run(partial(self.ledger.capture_general, plan=plan))
        return _answer(pb.CaptureResponse, result, "capture", hold=_resolved_pb(result))

    async def Release(self, request: pb.ReleaseRequest, context: Context) -> pb.ReleaseResponse:
        release = partial(
            self.ledger.release,
            transfer_id=request.transfer_id,
            hold_id=request.hold_id,
            reason=request.reason,
        )
        result = await self._run(release)
        return _answer(pb.ReleaseResponse, result, "release", hold=_resolved_pb(result))

    async def Debit(self, request: pb.DebitRequest, context: Context) -> pb.DebitResponse:
        debit = partial(
            self.ledger.debit,
            transfer_id=request.transfer_id,
            user_id=request.user_id,
            amount=_credits(request.amount),
            reference=_reference(request.reference),
            metadata=dict(request.metadata),
        )
        return _answer(pb.DebitResponse, await self._run(debit, refusable=True))

    async def Refund(self, request: pb.RefundRequest, context: Context) -> pb.RefundResponse:
        refund = partial(
            self.ledger.refund,
            transfer_id=request.transfer_id,
            original_transfer_id=request.original_transfer_id,
            amount=_credits(request.amount),
            reason=request.reason,
            metadata=dict(request.metadata),
        )
        result = await self._run(refund)
        remaining = _credits_pb(result.refundable_remaining or Credits(0))
        return _answer(pb.RefundResponse, result, refundable_remaining=remaining)

    async def Adjust(self, request: pb.AdjustRequest, context: Context) -> pb.AdjustResponse:
        adjust = partial(
            self.ledger.adjust,
            transfer_id=request.transfer_id,
            user_id=request.user_id,
            amount=_credits(request.amount),
            reason=request.reason,
            actor_id=request.actor_id,
        )
        return _answer(pb.AdjustResponse, await self._run(adjust, refusable=True))

    async def GetTransfer(self, request: pb.GetTransferRequest, context: Context) -> pb.GetTransferResponse:
        transfer = await self._run(partial(self.ledger.get_transfer, transfer_id=request.transfer_id))
        return pb.GetTransferResponse(transfer=transfer_pb(transfer))

    # .. reads ......................................................................................

    async def GetBalance(self, request: pb.GetBalanceRequest, context: Context) -> pb.GetBalanceResponse:
        balance = await self._run(partial(self.ledger.balance, user_id=request.user_id))
        return pb.GetBalanceResponse(balance=balance_pb(balance))

    async def ListRecords(self, request: pb.ListRecordsRequest, context: Context) -> pb.ListRecordsResponse:
        types = [_enum_name(pb.RecordType, "RECORD_TYPE_", t) for t in request.types if t]
        query = partial(self.ledger.records, user_id=request.user_id, types=types)
        records, page = await self._paged(query, request.page)
        return pb.ListRecordsResponse(records=[_pb(pb.Record, r) for r in records], page=page)

    async def GetUsage(self, request: pb.GetUsageRequest, context: Context) -> pb.GetUsageResponse:
        group_by = request.group_by or pb.USAGE_GROUP_BY_DAY
        query = partial(
            self.ledger.usage,
            user_id=request.user_id,
            from_time=_optional_ts(request, "from_time"),
            to_time=_optional_ts(request, "to_time"),
            group_by=_enum_name(pb.UsageGroupBy, "USAGE_GROUP_BY_", group_by),
            time_zone=request.time_zone,
        )
        return _pb(pb.GetUsageResponse, await self._run(query))

    # .. recharge orders ............................................................................

    async def CreateRechargeOrder(
        self, request: pb.CreateRechargeOrderRequest, context: Context
    ) -> pb.CreateRechargeOrderResponse:
        create = partial(
            self.ledger.create_order,
            order_id=request.order_id,
            user_id=request.user_id,
            method=request.method,
            provider=request.provider,
            amount=_money(request.amount, "amount"),
            plan_code=request.plan_code,
            paid_credits=_credits(request.paid_credits),
            bonus_credits=_credits(request.bonus_credits),
            catalog_version=request.catalog_version,
            expires_at=_optional_ts(request, "expires_at"),
        )
        order, replayed = await self._run(create)
        return pb.CreateRechargeOrderResponse(order=order_pb(order), replayed=replayed)

    async def AttachRechargeCheckout(
        self, request: pb.AttachRechargeCheckoutRequest, context: Context
    ) -> pb.AttachRechargeCheckoutResponse:
        attach = partial(
            self.ledger.attach_checkout,
            order_id=request.order_id,
            provider_checkout_id=request.provider_checkout_id,
            pay_url=request.pay_url,
        )
        order = await self._run(attach)
        return pb.AttachRechargeCheckoutResponse(order=order_pb(order))

    async def GetRechargeOrder(
        self, request: pb.GetRechargeOrderRequest, context: Context
    ) -> pb.GetRechargeOrderResponse:
        order = await self._run(
            partial(self.ledger.get_order, order_id=request.order_id, user_id=request.user_id)
        )
        return pb.GetRechargeOrderResponse(order=order_pb(order))

    async def CompleteRechargeOrder(
        self, request: pb.CompleteRechargeOrderRequest, context: Context
    ) -> pb.CompleteRechargeOrderResponse:
        complete = partial(
            self.ledger.complete_order,
            order_id=request.order_id,
            provider_transaction_id=request.provider_transaction_id,
            paid=_money(request.paid, "paid"),
            callback_id=request.callback_id,
        )
        try:
            result = await self._run(complete)
        except svc.AmountMismatch as mismatch:
            # Refused and rolled back; the refusal itself is kept on the order.
            await self._run(
                partial(self.ledger.record_mismatch, order_id=request.order_id, reason=mismatch.message)
            )
            raise
        return pb.CompleteRechargeOrderResponse(
            order=order_pb(result.order),
            already_completed=result.already_completed,
            balance=balance_pb(result.balance),
        )

    async def ListPendingRechargeOrders(
        self, request: pb.ListPendingRechargeOrdersRequest, context: Context
    ) -> pb.ListPendingRechargeOrdersResponse:
        query = partial(
            self.ledger.pending_orders,
            created_before=_optional_ts(request, "created_before"),
            provider=request.provider,
        )
        orders, page = await self._paged(query, request.page)
        return pb.ListPendingRechargeOrdersResponse(orders=[order_pb(o) for o in orders], page=page)

    # .. callbacks ..................................................................................

    async def RecordCallback(
        self, request: pb.RecordCallbackRequest, context: Context
    ) -> pb.RecordCallbackResponse:
        if request.outcome == pb.CALLBACK_OUTCOME_UNSPECIFIED:
            raise InvalidArgument("outcome is required", code="invalid_argument", field="outcome")
        record = partial(
            self.ledger.record_callback,
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
            received_at=_optional_ts(request, "received_at"),
        )
        callback = await self._run(record)
        return pb.RecordCallbackResponse(callback=callback_pb(callback))

    async def ListCallbacks(
        self, request: pb.ListCallbacksRequest, context: Context
    ) -> pb.ListCallbacksResponse:
        outcome = ""
        if request.outcome:
            outcome = _enum_name(pb.CallbackOutcome, "CALLBACK_OUTCOME_", request.outcome)
        query = partial(
            self.ledger.list_callbacks,
            user_id=request.user_id,
            order_id=request.order_id,
            provider=request.provider,
            outcome=outcome,
        )
        found, page = await self._paged(query, request.page)
        return pb.ListCallbacksResponse(callbacks=[callback_pb(c) for c in found], page=page)

    # .. diagnostics ................................................................................

    async def GetSpendChain(
        self, request: pb.GetSpendChainRequest, context: Context
    ) -> pb.GetSpendChainResponse:
        return _pb(
            pb.GetSpendChainResponse, await self._run(partial(self.ledger.spend_chain, some_id=request.id))
        )

    async def Reconcile(self, request: pb.ReconcileRequest, context: Context) -> pb.ReconcileResponse:
        async with self.runtime.db.transaction() as session:
            report = await self.ledger.reconcile(session, expiry_grace=self.runtime.settings.expiry_grace())
        return _pb(pb.ReconcileResponse, report)
