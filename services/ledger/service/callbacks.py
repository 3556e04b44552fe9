"""The payment callback log: every delivery a provider made, verified or not, and what came of it."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from kit.cursors import page_limit, split_page
from kit.errors import InvalidArgument
from kit.idempotency import same_request
from kit.money import Money
from kit.telemetry import current_trace_id
from services.ledger import metrics
from services.ledger import repository as repo
from services.ledger.repository.records import CallbackFields, CallbackRecord
from services.ledger.service.core import LedgerCore
from services.ledger.service.values import (
    DEFAULT_PAGE,
    MAX_PAGE,
    _require_id,
    from_record,
    request_hash,
    stored_money,
)

CALLBACK_OUTCOMES = ("credited", "duplicate", "ignored", "rejected", "error")


@dataclass(frozen=True)
class CallbackLog(CallbackFields):
    """A delivery in the callback log: its row's fields, the amount as money."""

    amount: Money | None

    @classmethod
    def from_row(cls, row: CallbackRecord) -> CallbackLog:
        amount = stored_money(row.amount_minor, row.amount_currency)
        return from_record(cls, row, amount=amount, headers=dict(row.headers or {}))


class Callbacks(LedgerCore):
    """The payment callback log."""

    async def record_callback(
        self,
        session: AsyncSession,
        *,
        callback_id: str,
        provider: str,
        provider_event_id: str = "",
        order_id: str = "",
        verified: bool,
        outcome: str,
        reason: str = "",
        provider_status: str = "",
        provider_transaction_id: str = "",
        amount: Money | None = None,
        payload_json: str = "{}",
        headers: Mapping[str, str] | None = None,
        remote_addr: str = "",
        received_at: datetime | None = None,
    ) -> CallbackLog:
        callback_id = _require_id(callback_id, "callback_id")
        provider = _require_id(provider, "provider")
        if outcome not in CALLBACK_OUTCOMES:
            raise InvalidArgument("unknown callback outcome", code="invalid_argument", field="outcome")
        try:
            json.loads(payload_json or "{}")
        except ValueError as exc:
            raise InvalidArgument("payload_json is not JSON", code="invalid_argument") from exc
        digest = request_hash(
            "callback",
            provider=provider,
            provider_event_id=provider_event_id,
            order_id=order_id,
            verified=verified,
            outcome=outcome,
            reason=reason,
            provider_status=provider_status,
            provider_transaction_id=provider_transaction_id,
            amount=[amount.minor, amount.currency] if amount else None,
            payload_json=payload_json,
            headers=dict(headers or {}),
            remote_addr=remote_addr,
            received_at=received_at.isoformat() if received_at else None,
        )
        user_id = ""
        if order_id:
            order = await repo.get_order(session, order_id)
            user_id = order.user_id if order is not None else ""
        values: dict[str, Any] = {
            "id": callback_id,
            "provider": provider,
            "provider_event_id": provider_event_id,
            "order_id": order_id,
            "user_id": user_id,
            "verified": verified,
            "outcome": outcome,
            "reason": reason,
            "provider_status": provider_status,
            "provider_transaction_id": provider_transaction_id,
            "amount_minor": amount.minor if amount else None,
            "amount_currency": amount.currency if amount else None,
            "payload_json": payload_json or "{}",
            "headers": dict(headers or {}),
            "remote_addr": remote_addr,
            "trace_id": current_trace_id(),
            "request_hash": digest,
        }
        if received_at is not None:
            values["received_at"] = received_at
        row = await repo.insert_callback(session, values)
        if row is not None:
            metrics.callback_recorded(session, provider, outcome, values["trace_id"])
        else:
            row = same_request(
                await repo.get_callback(session, callback_id),
                digest,
                f"callback id {callback_id!r} was already used with a different request",
            )
        return CallbackLog.from_row(row)

    async def list_callbacks(
        self,
        session: AsyncSession,
        *,
        user_id: str = "",
        order_id: str = "",
        provider: str = "",
        outcome: str = "",
        cursor: str = "",
        limit: int = 0,
    ) -> tuple[list[CallbackLog], str]:
        size = page_limit(limit, default=DEFAULT_PAGE, maximum=MAX_PAGE)
        before: int | None = None
        if cursor:
            try:
                before = int(cursor)
            except ValueError as exc:
                raise InvalidArgument("the cursor is not valid", code="invalid_cursor") from exc
        rows = await repo.list_callbacks(
            session,
            user_id=user_id,
            order_id=order_id,
            provider=provider,
            outcome=outcome,
            before_seq=before,
            limit=size + 1,
        )
        page, next_cursor = split_page(rows, size, lambda r: str(r.seq))
        return [CallbackLog.from_row(row) for row in page], next_cursor
