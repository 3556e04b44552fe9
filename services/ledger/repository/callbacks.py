"""Queries of the payment callback log."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.ledger.models import callbacks
from services.ledger.repository.records import CallbackRecord, all_of, insert_new, of


async def insert_callback(session: AsyncSession, values: dict[str, Any]) -> CallbackRecord | None:
    return await insert_new(session, callbacks, CallbackRecord, values)


async def get_callback(session: AsyncSession, callback_id: str) -> CallbackRecord | None:
    row = (await session.execute(select(callbacks).where(callbacks.c.id == callback_id))).first()
    return of(CallbackRecord, row) if row is not None else None


async def callbacks_by_ids(session: AsyncSession, ids: Sequence[str]) -> list[CallbackRecord]:
    if not ids:
        return []
    return all_of(CallbackRecord, await session.execute(select(callbacks).where(callbacks.c.id.in_(ids))))


async def list_callbacks(
    session: AsyncSession,
    *,
    user_id: str,
    order_id: str,
    provider: str,
    outcome: str,
    before_seq: int | None,
    limit: int,
) -> list[CallbackRecord]:
    c = callbacks.c
    query = select(callbacks)
    if user_id:
        query = query.where(c.user_id == user_id)
    if order_id:
        query = query.where(c.order_id == order_id)
    if provider:
        query = query.where(c.provider == provider)
    if outcome:
        query = query.where(c.outcome == outcome)
    if before_seq is not None:
        query = query.where(c.seq < before_seq)
    return all_of(CallbackRecord, await session.execute(query.order_by(c.seq.desc()).limit(limit)))
