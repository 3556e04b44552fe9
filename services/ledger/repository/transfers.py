"""Queries of transfers: the insert, a hold's resolution, and reads by id, reference or trace."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, bindparam, func, select, text, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession

from services.ledger.models import transfers
from services.ledger.repository.records import TransferRecord, all_of, of


async def get_transfer(
    session: AsyncSession, transfer_id: str, *, lock: bool = False
) -> TransferRecord | None:
    query = select(transfers).where(transfers.c.id == transfer_id)
    if lock:
        query = query.with_for_update()
    row = (await session.execute(query)).first()
    return of(TransferRecord, row) if row is not None else None


_TRANSFER_DEFAULTS: dict[str, Any] = {
    "user_id": None,
    "reference_type": "",
    "reference_id": "",
    "metadata": {},
    "trace_id": "",
    "linked_transfer_id": None,
    "expires_at": None,
    "reason": "",
    "actor_id": "",
}
_INSERT_TRANSFER = text(
    """
    INSERT INTO transfers (id, kind, debit_account, credit_account, amount, status, user_id,
        reference_type, reference_id, metadata, trace_id, linked_transfer_id, expires_at, reason,
        actor_id, request_hash)
    VALUES (:id, :kind, :debit_account, :credit_account, :amount, :status, :user_id,
        :reference_type, :reference_id, :metadata, :trace_id, :linked_transfer_id, :expires_at, :reason,
        :actor_id, :request_hash)
    ON CONFLICT (id) DO NOTHING
    RETURNING *
    """
).bindparams(bindparam("metadata", type_=JSONB), bindparam("expires_at", type_=DateTime(timezone=True)))


async def insert_transfer(session: AsyncSession, values: dict[str, Any]) -> TransferRecord | None:
    """Insert a transfer; None when its id is already taken (by a retry or a concurrent first use)."""
    row = (await session.execute(_INSERT_TRANSFER, {**_TRANSFER_DEFAULTS, **values})).first()
    return of(TransferRecord, row) if row is not None else None


async def resolve_hold(session: AsyncSession, hold_id: str, status: str) -> TransferRecord:
    row = (
        await session.execute(
            update(transfers)
            .where(transfers.c.id == hold_id)
            .values(status=status, resolved_at=func.now())
            .returning(transfers)
        )
    ).one()
    return of(TransferRecord, row)


async def refunded_total(session: AsyncSession, original_id: str) -> int:
    total = (
        await session.execute(
            select(func.coalesce(func.sum(transfers.c.amount), 0)).where(
                transfers.c.linked_transfer_id == original_id, transfers.c.kind == "refund"
            )
        )
    ).scalar_one()
    return int(total)


async def expired_hold_ids(session: AsyncSession, now: datetime, limit: int) -> list[str]:
    rows = await session.execute(
        select(transfers.c.id)
        .where(transfers.c.status == "pending", transfers.c.expires_at <= now)
        .order_by(transfers.c.expires_at)
        .limit(limit)
    )
    return [row.id for row in rows]


async def transfers_by_reference(
    session: AsyncSession, reference_type: str, reference_id: str
) -> list[TransferRecord]:
    return all_of(
        TransferRecord,
        await session.execute(
            select(transfers)
            .where(transfers.c.reference_type == reference_type, transfers.c.reference_id == reference_id)
            .order_by(transfers.c.seq)
        ),
    )


async def transfers_by_trace(session: AsyncSession, trace_id: str) -> list[TransferRecord]:
    return all_of(
        TransferRecord,
        await session.execute(
            select(transfers).where(transfers.c.trace_id == trace_id).order_by(transfers.c.seq)
        ),
    )


async def transfers_by_ids(session: AsyncSession, ids: Sequence[str]) -> list[TransferRecord]:
    if not ids:
        return []
    return all_of(TransferRecord, await session.execute(select(transfers).where(transfers.c.id.in_(ids))))


async def transfers_linked_to(session: AsyncSession, transfer_id: str) -> list[TransferRecord]:
    return all_of(
        TransferRecord,
        await session.execute(
            select(transfers).where(transfers.c.linked_transfer_id == transfer_id).order_by(transfers.c.seq)
        ),
    )
