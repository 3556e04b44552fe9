"""Queries of reconciliation: the books recomputed from the transfers, and what breaks an invariant."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.ledger.models import transfers
from services.ledger.repository.records import all_of

POSTING_KINDS = ("recharge", "bonus", "grant", "capture", "debit", "refund", "adjustment")


async def balances_from_transfers(session: AsyncSession) -> dict[str, dict[str, int]]:
    """Every account's totals recomputed from the transfers alone."""
    t = transfers.c
    totals: dict[str, dict[str, int]] = {}

    def bucket(account: str) -> dict[str, int]:
        return totals.setdefault(
            account, {"posted_credits": 0, "posted_debits": 0, "pending_credits": 0, "pending_debits": 0}
        )

    posted = await session.execute(
        select(t.debit_account, t.credit_account, func.sum(t.amount))
        .where(t.kind.in_(POSTING_KINDS))
        .group_by(t.debit_account, t.credit_account)
    )
    for debit, credit, amount in posted:
        bucket(debit)["posted_debits"] += int(amount)
        bucket(credit)["posted_credits"] += int(amount)
    pending = await session.execute(
        select(t.debit_account, t.credit_account, func.sum(t.amount))
        .where(t.kind == "hold", t.status == "pending")
        .group_by(t.debit_account, t.credit_account)
    )
    for debit, credit, amount in pending:
        bucket(debit)["pending_debits"] += int(amount)
        bucket(credit)["pending_credits"] += int(amount)
    return totals


async def count_transfers(session: AsyncSession) -> int:
    return int((await session.execute(select(func.count()).select_from(transfers))).scalar_one())


@dataclass(frozen=True)
class ExpiredHold:
    id: str
    expires_at: datetime


async def expired_pending_holds(session: AsyncSession, now: datetime) -> list[ExpiredHold]:
    return all_of(
        ExpiredHold,
        await session.execute(
            select(transfers.c.id, transfers.c.expires_at).where(
                transfers.c.kind == "hold", transfers.c.status == "pending", transfers.c.expires_at <= now
            )
        ),
    )


@dataclass(frozen=True)
class HoldResolutions:
    """A hold and how many captures/releases resolved it."""

    id: str
    status: str
    resolutions: int


async def hold_resolution_counts(session: AsyncSession) -> list[HoldResolutions]:
    """Holds whose resolving transfers disagree with their status (a hold resolves exactly once)."""
    hold = transfers.alias("hold")
    child = transfers.alias("child")
    resolutions = func.count(child.c.id)
    return all_of(
        HoldResolutions,
        await session.execute(
            select(hold.c.id, hold.c.status, resolutions.label("resolutions"))
            .select_from(
                hold.outerjoin(
                    child,
                    and_(child.c.linked_transfer_id == hold.c.id, child.c.kind.in_(("capture", "release"))),
                )
            )
            .where(hold.c.kind == "hold")
            .group_by(hold.c.id, hold.c.status)
            .having(
                or_(
                    and_(hold.c.status == "pending", resolutions != 0),
                    and_(hold.c.status != "pending", resolutions != 1),
                )
            )
        ),
    )


@dataclass(frozen=True)
class OverRefund:
    id: str
    amount: int
    refunded: int


async def over_refunded(session: AsyncSession) -> list[OverRefund]:
    original = transfers.alias("original")
    refunds = transfers.alias("refunds")
    refunded = func.sum(refunds.c.amount)
    return all_of(
        OverRefund,
        await session.execute(
            select(original.c.id, original.c.amount, refunded.label("refunded"))
            .select_from(
                original.join(
                    refunds, and_(refunds.c.linked_transfer_id == original.c.id, refunds.c.kind == "refund")
                )
            )
            .group_by(original.c.id, original.c.amount)
            .having(refunded > original.c.amount)
        ),
    )


async def order_credit_transfers(session: AsyncSession) -> dict[str, list[tuple[str, int]]]:
    """(kind, amount) of every recharge/bonus transfer, by the order it references."""
    rows = await session.execute(
        select(transfers.c.reference_id, transfers.c.kind, transfers.c.amount).where(
            transfers.c.reference_type == "recharge_order", transfers.c.kind.in_(("recharge", "bonus"))
        )
    )
    found: dict[str, list[tuple[str, int]]] = {}
    for reference_id, kind, amount in rows:
        found.setdefault(reference_id, []).append((kind, int(amount)))
    return found
