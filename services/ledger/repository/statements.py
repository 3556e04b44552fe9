"""Queries of what a user sees: statement entries and the hourly usage rollup."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, func, literal, or_, select, union_all
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.ledger.models import callbacks, transfers, usage_hourly
from services.ledger.repository.records import all_of


@dataclass(frozen=True)
class SpendRecord:
    """A capture or debit of a user with what was refunded of it."""

    id: str
    amount: int
    metadata: dict[str, Any]
    reference_type: str
    reference_id: str
    created_at: datetime
    refunded: int


async def spend_transfers(
    session: AsyncSession, user_id: str, from_time: datetime | None, to_time: datetime | None
) -> list[SpendRecord]:
    """Captures and debits of a user with what was refunded of each."""
    original = transfers.alias("original")
    refunds = transfers.alias("refunds")
    conditions = [original.c.user_id == user_id, original.c.kind.in_(("capture", "debit"))]
    if from_time is not None:
        conditions.append(original.c.created_at >= from_time)
    if to_time is not None:
        conditions.append(original.c.created_at < to_time)
    query = (
        select(
            original.c.id,
            original.c.amount,
            original.c.metadata,
            original.c.reference_type,
            original.c.reference_id,
            original.c.created_at,
            func.coalesce(func.sum(refunds.c.amount), 0).label("refunded"),
        )
        .select_from(
            original.outerjoin(
                refunds, and_(refunds.c.linked_transfer_id == original.c.id, refunds.c.kind == "refund")
            )
        )
        .where(*conditions)
        .group_by(original.c.id)
    )
    return all_of(SpendRecord, await session.execute(query))


def usage_hour(at: datetime) -> datetime:
    """The UTC hour a transfer's spend is rolled up in."""
    return at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


async def add_usage(
    session: AsyncSession,
    user_id: str,
    created_at: datetime,
    metadata: dict[str, Any] | None,
    spend: int,
    charges: int,
) -> None:
    """Adds to the usage rollup row of a capture/debit (made at `created_at` with `metadata`)."""
    meta = metadata or {}
    statement = pg_insert(usage_hourly).values(
        user_id=user_id,
        hour=usage_hour(created_at),
        model=str(meta.get("model") or ""),
        kind=str(meta.get("kind") or ""),
        spend_milli=spend,
        charges=charges,
    )
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=[
                usage_hourly.c.user_id,
                usage_hourly.c.hour,
                usage_hourly.c.model,
                usage_hourly.c.kind,
            ],
            set_={
                "spend_milli": usage_hourly.c.spend_milli + statement.excluded.spend_milli,
                "charges": usage_hourly.c.charges + statement.excluded.charges,
            },
        )
    )


@dataclass(frozen=True)
class UsageRecord:
    """A row of the `usage_hourly` rollup."""

    hour: datetime
    model: str
    kind: str
    spend_milli: int
    charges: int


async def usage_rows(
    session: AsyncSession, user_id: str, from_hour: datetime | None, to_hour: datetime | None
) -> list[UsageRecord]:
    """The rollup rows of a user in [from_hour, to_hour) (either bound open)."""
    conditions = [usage_hourly.c.user_id == user_id]
    if from_hour is not None:
        conditions.append(usage_hourly.c.hour >= from_hour)
    if to_hour is not None:
        conditions.append(usage_hourly.c.hour < to_hour)
    query = select(
        usage_hourly.c.hour,
        usage_hourly.c.model,
        usage_hourly.c.kind,
        usage_hourly.c.spend_milli,
        usage_hourly.c.charges,
    ).where(*conditions)
    return all_of(UsageRecord, await session.execute(query))


async def usage_totals(session: AsyncSession) -> dict[str, tuple[int, int]]:
    """Per user: the rollup's spend and charges."""
    query = select(
        usage_hourly.c.user_id, func.sum(usage_hourly.c.spend_milli), func.sum(usage_hourly.c.charges)
    ).group_by(usage_hourly.c.user_id)
    return {row[0]: (int(row[1]), int(row[2])) for row in (await session.execute(query)).all()}


async def spend_totals(session: AsyncSession) -> dict[str, tuple[int, int]]:
    """Per user, from the transfers: captures and debits less their refunds, and how many are not
    fully refunded (what the usage rollup must hold)."""
    refunds = (
        select(transfers.c.linked_transfer_id, func.sum(transfers.c.amount).label("refunded"))
        .where(transfers.c.kind == "refund")
        .group_by(transfers.c.linked_transfer_id)
        .subquery()
    )
    net = transfers.c.amount - func.coalesce(refunds.c.refunded, 0)
    query = (
        select(transfers.c.user_id, func.sum(net), func.count().filter(net > 0))
        .select_from(transfers.outerjoin(refunds, refunds.c.linked_transfer_id == transfers.c.id))
        .where(transfers.c.kind.in_(("capture", "debit")), transfers.c.user_id.is_not(None))
        .group_by(transfers.c.user_id)
    )
    return {row[0]: (int(row[1]), int(row[2])) for row in (await session.execute(query)).all()}


RECORD_KINDS = {
    "recharge": ("recharge", "bonus"),
    "consumption": ("capture", "debit"),
    "refund": ("refund",),
    "adjustment": ("grant", "adjustment"),
}


@dataclass(frozen=True)
class RecordKey:
    """A statement entry: a transfer or a callback, by when it happened."""

    source: str
    id: str
    occurred_at: datetime


async def record_keys(
    session: AsyncSession,
    user_id: str,
    types: Sequence[str],
    after: tuple[datetime, str] | None,
    limit: int,
) -> list[RecordKey]:
    """(source, id, occurred_at) of a user's statement entries, newest first, after a cursor."""
    parts = []
    kinds = [kind for record_type in types for kind in RECORD_KINDS.get(record_type, ())]
    if kinds:
        parts.append(
            select(
                literal("transfer").label("source"),
                transfers.c.id.label("id"),
                transfers.c.created_at.label("occurred_at"),
            ).where(transfers.c.user_id == user_id, transfers.c.kind.in_(kinds))
        )
    if "callback" in types:
        # Only deliveries the provider signed and that are about this user's payment: an unverified one
        # names an order on the sender's word, and a rejected one (another merchant's, another currency)
        # carries someone else's payload. Admins see both in the callback log (`list_callbacks`).
        parts.append(
            select(
                literal("callback").label("source"),
                callbacks.c.id.label("id"),
                callbacks.c.received_at.label("occurred_at"),
            ).where(
                callbacks.c.user_id == user_id,
                callbacks.c.verified.is_(True),
                callbacks.c.outcome != "rejected",
            )
        )
    if not parts:
        return []
    union = union_all(*parts).subquery()
    query = select(union.c.source, union.c.id, union.c.occurred_at)
    if after is not None:
        at, last_id = after
        query = query.where(
            or_(union.c.occurred_at < at, and_(union.c.occurred_at == at, union.c.id < last_id))
        )
    query = query.order_by(union.c.occurred_at.desc(), union.c.id.desc()).limit(limit)
    return all_of(RecordKey, await session.execute(query))
