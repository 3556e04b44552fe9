"""Queries of recharge orders."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.ledger.models import recharge_orders
from services.ledger.repository.records import OrderRecord, all_of, insert_new, of


async def insert_order(session: AsyncSession, values: dict[str, Any]) -> OrderRecord | None:
    return await insert_new(session, recharge_orders, OrderRecord, values)


async def get_order(session: AsyncSession, order_id: str, *, lock: bool = False) -> OrderRecord | None:
    query = select(recharge_orders).where(recharge_orders.c.id == order_id)
    if lock:
        query = query.with_for_update()
    row = (await session.execute(query)).first()
    return of(OrderRecord, row) if row is not None else None


async def order_by_transaction(
    session: AsyncSession, provider: str, provider_transaction_id: str
) -> OrderRecord | None:
    row = (
        await session.execute(
            select(recharge_orders).where(
                recharge_orders.c.provider == provider,
                recharge_orders.c.provider_transaction_id == provider_transaction_id,
            )
        )
    ).first()
    return of(OrderRecord, row) if row is not None else None


async def update_order(session: AsyncSession, order_id: str, values: dict[str, Any]) -> OrderRecord:
    row = (
        await session.execute(
            update(recharge_orders)
            .where(recharge_orders.c.id == order_id)
            .values(**values)
            .returning(recharge_orders)
        )
    ).one()
    return of(OrderRecord, row)


async def expire_orders(session: AsyncSession, before: datetime, limit: int) -> list[OrderRecord]:
    due = (
        select(recharge_orders.c.id)
        .where(recharge_orders.c.status == "pending", recharge_orders.c.expires_at < before)
        .order_by(recharge_orders.c.expires_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    return all_of(
        OrderRecord,
        await session.execute(
            update(recharge_orders)
            .where(recharge_orders.c.id.in_(due))
            .values(status="expired", failure_reason="not paid before expiry")
            .returning(recharge_orders)
        ),
    )


async def pending_orders(
    session: AsyncSession,
    created_before: datetime | None,
    provider: str,
    after: tuple[datetime, str] | None,
    limit: int,
) -> list[OrderRecord]:
    o = recharge_orders.c
    query = select(recharge_orders).where(o.status == "pending")
    if created_before is not None:
        query = query.where(o.created_at < created_before)
    if provider:
        query = query.where(o.provider == provider)
    if after is not None:
        at, last_id = after
        query = query.where(or_(o.created_at > at, and_(o.created_at == at, o.id > last_id)))
    return all_of(OrderRecord, await session.execute(query.order_by(o.created_at, o.id).limit(limit)))


async def all_orders(session: AsyncSession) -> list[OrderRecord]:
    return all_of(OrderRecord, await session.execute(select(recharge_orders)))
