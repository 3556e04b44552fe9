"""Recharge orders: created with the credits quoted by the catalog, completed exactly once by a
provider's payment (crediting the paid and bonus credits), expired when never paid."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from sqlalchemy.ext.asyncio import AsyncSession

from atelier.common.v1 import common_pb2
from atelier.events.v1 import events_pb2
from kit.cursors import decode_cursor, encode_cursor, page_limit, split_page
from kit.errors import FailedPrecondition, InvalidArgument, NotFound
from kit.idempotency import same_request
from kit.money import Credits, Money
from kit.telemetry import current_trace_id
from services.ledger import metrics
from services.ledger import repository as repo
from services.ledger.repository.records import OrderRecord
from services.ledger.service.transfers import Transfers
from services.ledger.service.values import (
    DEFAULT_PAGE,
    MAX_PAGE,
    PAYMENTS_COMPLETED,
    Balance,
    Kind,
    Reference,
    _require_id,
    _require_positive,
    from_record,
    payments_account,
    request_hash,
    stored_money,
)


class OrderStatus(StrEnum):
    PENDING = "pending"
    COMPLETED = "completed"
    FAILED = "failed"
    EXPIRED = "expired"


@dataclass(frozen=True)
class RechargeOrder:
    id: str
    user_id: str
    method: str
    provider: str
    amount: Money
    plan_code: str
    paid_credits: Credits
    bonus_credits: Credits
    catalog_version: int
    status: OrderStatus
    provider_checkout_id: str
    pay_url: str
    provider_transaction_id: str
    paid_amount: Money | None
    failure_reason: str
    credit_transfer_id: str
    bonus_transfer_id: str
    created_at: datetime
    expires_at: datetime | None
    completed_at: datetime | None
    trace_id: str

    @classmethod
    def from_row(cls, row: OrderRecord) -> RechargeOrder:
        return from_record(
            cls,
            row,
            amount=Money(int(row.amount_minor), row.currency),
            paid_credits=Credits(int(row.paid_credits)),
            bonus_credits=Credits(int(row.bonus_credits)),
            catalog_version=int(row.catalog_version),
            status=OrderStatus(row.status),
            provider_transaction_id=row.provider_transaction_id or "",
            paid_amount=stored_money(row.paid_minor, row.paid_currency),
            credit_transfer_id=row.credit_transfer_id or "",
            bonus_transfer_id=row.bonus_transfer_id or "",
        )


@dataclass(frozen=True)
class CompletionResult:
    order: RechargeOrder
    already_completed: bool
    balance: Balance


class AmountMismatch(FailedPrecondition):
    """The provider reports a payment that is not what the order asks for."""

    default_code = "amount_mismatch"


class Orders(Transfers):
    """Recharge orders; a completion credits through `Transfers.credit`."""

    async def create_order(
        self,
        session: AsyncSession,
        *,
        order_id: str,
        user_id: str,
        method: str,
        provider: str,
        amount: Money,
        plan_code: str,
        paid_credits: Credits,
        bonus_credits: Credits,
        catalog_version: int,
        expires_at: datetime | None,
    ) -> tuple[RechargeOrder, bool]:
        """Creates a pending order with the credits snapshotted from the catalog's quote."""
        order_id = _require_id(order_id, "order_id")
        user_id = _require_id(user_id, "user_id")
        method = _require_id(method, "method")
        provider = _require_id(provider, "provider")
        if amount.minor <= 0:
            raise InvalidArgument("the amount must be positive", code="invalid_amount", field="amount")
        _require_positive(paid_credits, "paid_credits")
        if bonus_credits.milli < 0:
            raise InvalidArgument("bonus_credits must not be negative", code="invalid_amount")
        digest = request_hash(
            "order",
            user_id=user_id,
            method=method,
            provider=provider,
            amount=[amount.minor, amount.currency],
            plan_code=plan_code,
            paid=paid_credits.milli,
            bonus=bonus_credits.milli,
            catalog_version=catalog_version,
            expires_at=expires_at.isoformat() if expires_at else None,
        )
        row = await repo.insert_order(
            session,
            {
                "id": order_id,
                "user_id": user_id,
                "method": method,
                "provider": provider,
                "amount_minor": amount.minor,
                "currency": amount.currency,
                "plan_code": plan_code,
                "paid_credits": paid_credits.milli,
                "bonus_credits": bonus_credits.milli,
                "catalog_version": catalog_version,
                "status": OrderStatus.PENDING.value,
                "request_hash": digest,
                "trace_id": current_trace_id(),
                "expires_at": expires_at,
            },
        )
        if row is not None:
            metrics.order_reached(session, provider, OrderStatus.PENDING.value)
            return RechargeOrder.from_row(row), False
        existing = same_request(
            await repo.get_order(session, order_id),
            digest,
            f"order id {order_id!r} was already used with a different request",
            order_id=order_id,
        )
        return RechargeOrder.from_row(existing), True

    async def get_order(self, session: AsyncSession, order_id: str, user_id: str = "") -> RechargeOrder:
        row = await repo.get_order(session, _require_id(order_id, "order_id"))
        if row is None or (user_id and row.user_id != user_id):
            raise NotFound(f"no recharge order {order_id!r}", code="order_not_found", order_id=order_id)
        return RechargeOrder.from_row(row)

    async def attach_checkout(
        self, session: AsyncSession, *, order_id: str, provider_checkout_id: str, pay_url: str
    ) -> RechargeOrder:
        order = await repo.get_order(session, _require_id(order_id, "order_id"), lock=True)
        if order is None:
            raise NotFound(f"no recharge order {order_id!r}", code="order_not_found", order_id=order_id)
        if order.status != OrderStatus.PENDING:
            raise FailedPrecondition("the order is no longer pending", code="order_not_pending")
        row = await repo.update_order(
            session, order.id, {"provider_checkout_id": provider_checkout_id, "pay_url": pay_url}
        )
        return RechargeOrder.from_row(row)

    async def complete_order(
        self,
        session: AsyncSession,
        *,
        order_id: str,
        provider_transaction_id: str,
        paid: Money,
        callback_id: str = "",
    ) -> CompletionResult:
        """Credits the paid and bonus credits exactly once (the order row is locked first).

        A late payment of an expired or failed order is still credited: the money was received.
        A payment of another amount or currency raises AmountMismatch and changes nothing; the
        edge records it with `record_mismatch` in its own transaction.
        """
        order_id = _require_id(order_id, "order_id")
        provider_transaction_id = _require_id(provider_transaction_id, "provider_transaction_id")
        order = await repo.get_order(session, order_id, lock=True)
        if order is None:
            raise NotFound(f"no recharge order {order_id!r}", code="order_not_found", order_id=order_id)
        if order.status == OrderStatus.COMPLETED:
            balance = await self.balance(session, order.user_id)
            return CompletionResult(RechargeOrder.from_row(order), True, balance)
        if paid.currency != order.currency or paid.minor != int(order.amount_minor):
            raise AmountMismatch(
                f"paid {paid} but the order asks for {Money(int(order.amount_minor), order.currency)}",
                order_id=order_id,
                paid=str(paid),
            )
        other = await repo.order_by_transaction(session, order.provider, provider_transaction_id)
        if other is not None and other.id != order.id:
            raise FailedPrecondition(
                "this provider transaction already paid another order",
                code="transaction_already_used",
                order_id=other.id,
            )
        reference = Reference("recharge_order", order.id)
        meta = {"provider": order.provider, "currency": order.currency, "method": order.method}
        if callback_id:
            meta["callback_id"] = callback_id
        result = await self.credit(
            session,
            transfer_id=f"recharge:{order.id}",
            user_id=order.user_id,
            amount=Credits(int(order.paid_credits)),
            kind=Kind.RECHARGE,
            reference=reference,
            reason=f"recharge {provider_transaction_id}",
            metadata=meta,
            source_account=payments_account(order.provider, order.currency),
        )
        bonus_id = None
        if int(order.bonus_credits) > 0:
            bonus_id = f"bonus:{order.id}"
            result = await self.credit(
                session,
                transfer_id=bonus_id,
                user_id=order.user_id,
                amount=Credits(int(order.bonus_credits)),
                kind=Kind.BONUS,
                reference=reference,
                reason="recharge bonus",
                metadata=meta,
            )
        row = await repo.update_order(
            session,
            order.id,
            {
                "status": OrderStatus.COMPLETED.value,
                "provider_transaction_id": provider_transaction_id,
                "paid_minor": paid.minor,
                "paid_currency": paid.currency,
                "credit_transfer_id": f"recharge:{order.id}",
                "bonus_transfer_id": bonus_id,
                "completed_at": datetime.now(UTC),
                "failure_reason": "",
            },
        )
        completed = RechargeOrder.from_row(row)
        metrics.order_reached(session, order.provider, OrderStatus.COMPLETED.value)
        event_id = uuid.uuid4()
        await self.outbox.add(
            session,
            PAYMENTS_COMPLETED,
            events_pb2.RechargeCompleted(
                meta=self._meta(event_id),
                order_id=order.id,
                user_id=order.user_id,
                amount=common_pb2.Money(minor=paid.minor, currency=paid.currency),
                paid_credits=common_pb2.Credits(milli=int(order.paid_credits)),
                bonus_credits=common_pb2.Credits(milli=int(order.bonus_credits)),
                total_credits=common_pb2.Credits(milli=int(order.paid_credits) + int(order.bonus_credits)),
            ),
            event_id=event_id,
        )
        return CompletionResult(completed, False, result.balance)

    async def record_mismatch(self, session: AsyncSession, *, order_id: str, reason: str) -> None:
        """Notes a refused completion on the order (its status and the balances stay as they were)."""
        order = await repo.get_order(session, order_id, lock=True)
        if order is not None and order.status != OrderStatus.COMPLETED:
            await repo.update_order(session, order_id, {"failure_reason": reason[:500]})

    async def expire_orders(
        self, session: AsyncSession, *, before: datetime, limit: int = 0
    ) -> list[RechargeOrder]:
        rows = await repo.expire_orders(
            session, before, page_limit(limit, default=DEFAULT_PAGE, maximum=MAX_PAGE)
        )
        for row in rows:
            metrics.order_reached(session, row.provider, OrderStatus.EXPIRED.value)
        return [RechargeOrder.from_row(row) for row in rows]

    async def pending_orders(
        self,
        session: AsyncSession,
        *,
        created_before: datetime | None,
        provider: str = "",
        cursor: str = "",
        limit: int = 0,
    ) -> tuple[list[RechargeOrder], str]:
        size = page_limit(limit, default=DEFAULT_PAGE, maximum=MAX_PAGE)
        rows = await repo.pending_orders(session, created_before, provider, decode_cursor(cursor), size + 1)
        page, next_cursor = split_page(rows, size, lambda r: encode_cursor(r.created_at, r.id))
        return [RechargeOrder.from_row(row) for row in page], next_cursor
