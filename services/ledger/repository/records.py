"""What the ledger's queries return: typed, frozen records of rows (a table's columns, or a query's),
built from a row by `of` so that a renamed column fails at the first read, not deep in a rule; and
`insert_new`, the insert-once that returns one. The records here are shared by several sub-domains; a
record only one query returns stands beside that query (`statements.py`, `diagnostics.py`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Row, Table
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

R = TypeVar("R")
_NAMES: dict[type, tuple[str, ...]] = {}  # each record class's field names, read once


def of(cls: type[R], row: Row[Any] | Mapping[str, Any]) -> R:
    """The record of a row: each field of `cls` from the column of its name."""
    mapping = row._mapping if isinstance(row, Row) else row
    names = _NAMES.get(cls)
    if names is None:
        names = _NAMES[cls] = tuple(f.name for f in fields(cls))  # type: ignore[arg-type]
    return cls(**{name: mapping[name] for name in names})


def all_of(cls: type[R], rows: Any) -> list[R]:
    return [of(cls, row) for row in rows]


async def insert_new(session: AsyncSession, table: Table, cls: type[R], values: dict[str, Any]) -> R | None:
    """Inserts a row unless its id is taken: the new row's record, or None."""
    row = (
        await session.execute(
            pg_insert(table)
            .values(**values)
            .on_conflict_do_nothing(index_elements=[table.c.id])
            .returning(table)
        )
    ).first()
    return of(cls, row) if row is not None else None


@dataclass(frozen=True)
class AccountRecord:
    """A row of `accounts`: a wallet ("user:<id>") or a shard of a system account."""

    id: str
    kind: str
    user_id: str | None
    posted_credits: int
    posted_debits: int
    pending_credits: int
    pending_debits: int
    version: int
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class WalletRecord(AccountRecord):
    """A wallet locked for a transfer, with whether that transfer id was refused before (else None)."""

    failed_code: str | None
    failed_hash: str | None
    failed_message: str | None


@dataclass(frozen=True)
class TransferRecord:
    """A row of `transfers`."""

    id: str
    seq: int
    kind: str
    debit_account: str
    credit_account: str
    amount: int
    status: str
    user_id: str | None
    reference_type: str
    reference_id: str
    metadata: dict[str, Any]
    trace_id: str
    linked_transfer_id: str | None
    expires_at: datetime | None
    resolved_at: datetime | None
    reason: str
    actor_id: str
    request_hash: str
    created_at: datetime

    @property
    def owner(self) -> str:
        """The user whose wallet it moves ("" for a transfer between system accounts)."""
        return self.user_id or ""


@dataclass(frozen=True)
class CapturedHold:
    """What a capture step of `ledger_apply` read of the hold it posted."""

    amount: int
    resolved_at: datetime
    hold_debit_account: str
    hold_credit_account: str
    hold_amount: int
    hold_user_id: str
    hold_reference_type: str
    hold_reference_id: str
    hold_metadata: dict[str, Any]
    hold_trace_id: str
    hold_created_at: datetime
    hold_expires_at: datetime | None


@dataclass(frozen=True)
class StepRecord:
    """A step of `ledger_apply` that wrote its transfer: when, and the wallet after it; `captured` for
    a capture."""

    created_at: datetime
    posted_credits: int
    posted_debits: int
    pending_debits: int
    version: int
    updated_at: datetime
    captured: CapturedHold | None


@dataclass(frozen=True)
class OrderRecord:
    """A row of `recharge_orders`."""

    id: str
    user_id: str
    method: str
    provider: str
    amount_minor: int
    currency: str
    plan_code: str
    paid_credits: int
    bonus_credits: int
    catalog_version: int
    status: str
    provider_checkout_id: str
    pay_url: str
    provider_transaction_id: str | None
    paid_minor: int | None
    paid_currency: str | None
    failure_reason: str
    credit_transfer_id: str | None
    bonus_transfer_id: str | None
    request_hash: str
    trace_id: str
    created_at: datetime
    expires_at: datetime | None
    completed_at: datetime | None


@dataclass(frozen=True)
class CallbackFields:
    """What a provider's delivery said and what came of it: the fields a row of `callbacks` and the
    service's `CallbackLog` share, stored as they are shown."""

    id: str
    provider: str
    provider_event_id: str
    order_id: str
    user_id: str
    verified: bool
    outcome: str
    reason: str
    provider_status: str
    provider_transaction_id: str
    payload_json: str
    headers: dict[str, str]
    remote_addr: str
    received_at: datetime
    trace_id: str


@dataclass(frozen=True)
class CallbackRecord(CallbackFields):
    """A row of `callbacks`."""

    seq: int
    amount_minor: int | None
    amount_currency: str | None
    request_hash: str
