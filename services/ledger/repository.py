"""Every query of the ledger service. Functions take the caller's session and never commit."""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.rows import namedtuple_row
from psycopg.types.json import Jsonb
from sqlalchemy import DateTime, Row, and_, bindparam, func, literal, or_, select, text, union_all, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.ledger.models import (
    accounts,
    callbacks,
    failed_transfers,
    recharge_orders,
    transfers,
    usage_hourly,
)

# -- accounts -------------------------------------------------------------------------------------


async def lock_wallet(session: AsyncSession, account_id: str, user_id: str, transfer_id: str) -> Row[Any]:
    """The wallet row, created on first use, locked `FOR UPDATE` until the transaction ends; with it,
    in the same round trip, whether `transfer_id` was refused before (`failed_code`, `failed_hash`,
    `failed_message`, else None)."""
    failed = failed_transfers.c

    def previous(column: Any, label: str) -> Any:
        return select(column).where(failed.id == transfer_id).scalar_subquery().label(label)

    query = (
        select(
            accounts,
            previous(failed.code, "failed_code"),
            previous(failed.request_hash, "failed_hash"),
            previous(failed.message, "failed_message"),
        )
        .where(accounts.c.id == account_id)
        .with_for_update(of=accounts)
    )
    row = (await session.execute(query)).first()
    if row is None:
        await session.execute(
            pg_insert(accounts)
            .values(id=account_id, kind="wallet", user_id=user_id)
            .on_conflict_do_nothing(index_elements=[accounts.c.id])
        )
        row = (await session.execute(query)).one()
    return row


async def get_account(session: AsyncSession, account_id: str) -> Row[Any] | None:
    return (await session.execute(select(accounts).where(accounts.c.id == account_id))).first()


async def change_wallet(
    session: AsyncSession,
    account_id: str,
    *,
    posted_credits: int = 0,
    posted_debits: int = 0,
    pending_debits: int = 0,
) -> Row[Any]:
    """Apply deltas to a wallet the caller has locked; returns the new row (version bumped)."""
    c = accounts.c
    return (
        await session.execute(
            update(accounts)
            .where(c.id == account_id)
            .values(
                posted_credits=c.posted_credits + posted_credits,
                posted_debits=c.posted_debits + posted_debits,
                pending_debits=c.pending_debits + pending_debits,
                version=c.version + 1,
                updated_at=func.now(),
            )
            .returning(accounts)
        )
    ).one()


# System accounts are touched by every transfer of their kind: one row would serialize all wallets
# on its lock. Each is spread over 16 shard rows ("system:revenue#07"), chosen by the wallet's user in
# SQL (`ledger_system_row`, so the server-side hold and capture pick the same row), summed when read.


def logical_account(row_id: str) -> str:
    return row_id.split("#", 1)[0]


async def change_system(
    session: AsyncSession,
    account_id: str,
    user_id: str,
    *,
    posted_credits: int = 0,
    posted_debits: int = 0,
    pending_credits: int = 0,
) -> None:
    """Apply deltas to the wallet's shard of a system account, creating it on first use."""
    await session.execute(
        _CHANGE_SYSTEM,
        {
            "account": account_id,
            "user_id": user_id,
            "posted_credits": posted_credits,
            "posted_debits": posted_debits,
            "pending_credits": pending_credits,
        },
    )


_CHANGE_SYSTEM = text(
    "SELECT ledger_change_system(ledger_system_row(:account, :user_id), "
    ":posted_credits, :posted_debits, :pending_credits)"
)


async def all_accounts(session: AsyncSession) -> Sequence[Row[Any]]:
    return (await session.execute(select(accounts).order_by(accounts.c.id))).all()


async def record_failure(
    session: AsyncSession, transfer_id: str, code: str, message: str, request_hash: str
) -> None:
    await session.execute(
        pg_insert(failed_transfers)
        .values(id=transfer_id, code=code, message=message, request_hash=request_hash)
        .on_conflict_do_nothing(index_elements=[failed_transfers.c.id])
    )


# -- transfers ------------------------------------------------------------------------------------


async def get_transfer(session: AsyncSession, transfer_id: str, *, lock: bool = False) -> Row[Any] | None:
    query = select(transfers).where(transfers.c.id == transfer_id)
    if lock:
        query = query.with_for_update()
    return (await session.execute(query)).first()


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


async def insert_transfer(session: AsyncSession, values: dict[str, Any]) -> Row[Any] | None:
    """Insert a transfer; None when its id is already taken (by a retry or a concurrent first use)."""
    return (await session.execute(_INSERT_TRANSFER, {**_TRANSFER_DEFAULTS, **values})).first()


async def resolve_hold(session: AsyncSession, hold_id: str, status: str) -> Row[Any]:
    return (
        await session.execute(
            update(transfers)
            .where(transfers.c.id == hold_id)
            .values(status=status, resolved_at=func.now())
            .returning(transfers)
        )
    ).one()


# The happy paths of a batch of holds and captures in one call of a server-side function (defined by
# a migration): one row per step, in order, whose `outcome` is "ok" when the transfer was written,
# "slow" when nothing was and the caller must take the general path. Plain psycopg: the statement
# shares a pipeline with the batch's events and its commit.
APPLY = "SELECT * FROM ledger_apply(%s)"


def _json_default(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


_dumps = functools.partial(json.dumps, default=_json_default, separators=(",", ":"))


async def driver_connection(session: AsyncSession) -> psycopg.AsyncConnection[Any]:
    """The psycopg connection under the session, in the session's transaction."""
    connection = await session.connection()
    driver = (await connection.get_raw_connection()).driver_connection
    if not isinstance(driver, psycopg.AsyncConnection):
        raise TypeError("the ledger runs on psycopg 3")
    return driver


async def apply_steps(
    connection: psycopg.AsyncConnection[Any], steps: Sequence[Mapping[str, Any]]
) -> list[Any]:
    """One row per step (`ledger_apply`), run in order in the connection's open transaction."""
    cursor = connection.cursor(row_factory=namedtuple_row)
    await cursor.execute(APPLY, [Jsonb(list(steps), dumps=_dumps)])
    return await cursor.fetchall()


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
) -> Sequence[Row[Any]]:
    return (
        await session.execute(
            select(transfers)
            .where(transfers.c.reference_type == reference_type, transfers.c.reference_id == reference_id)
            .order_by(transfers.c.seq)
        )
    ).all()


async def transfers_by_trace(session: AsyncSession, trace_id: str) -> Sequence[Row[Any]]:
    return (
        await session.execute(
            select(transfers).where(transfers.c.trace_id == trace_id).order_by(transfers.c.seq)
        )
    ).all()


async def transfers_by_ids(session: AsyncSession, ids: Sequence[str]) -> Sequence[Row[Any]]:
    if not ids:
        return []
    return (await session.execute(select(transfers).where(transfers.c.id.in_(ids)))).all()


async def transfers_linked_to(session: AsyncSession, transfer_id: str) -> Sequence[Row[Any]]:
    return (
        await session.execute(
            select(transfers).where(transfers.c.linked_transfer_id == transfer_id).order_by(transfers.c.seq)
        )
    ).all()


async def spend_transfers(
    session: AsyncSession, user_id: str, from_time: datetime | None, to_time: datetime | None
) -> Sequence[Row[Any]]:
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
    return (await session.execute(query)).all()


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


async def usage_rows(
    session: AsyncSession, user_id: str, from_hour: datetime | None, to_hour: datetime | None
) -> Sequence[Row[Any]]:
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
    return (await session.execute(query)).all()


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


async def record_keys(
    session: AsyncSession,
    user_id: str,
    types: Sequence[str],
    after: tuple[datetime, str] | None,
    limit: int,
) -> Sequence[Row[Any]]:
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
    return (await session.execute(query)).all()


# -- recharge orders -------------------------------------------------------------------------------


async def insert_order(session: AsyncSession, values: dict[str, Any]) -> Row[Any] | None:
    return (
        await session.execute(
            pg_insert(recharge_orders)
            .values(**values)
            .on_conflict_do_nothing(index_elements=[recharge_orders.c.id])
            .returning(recharge_orders)
        )
    ).first()


async def get_order(session: AsyncSession, order_id: str, *, lock: bool = False) -> Row[Any] | None:
    query = select(recharge_orders).where(recharge_orders.c.id == order_id)
    if lock:
        query = query.with_for_update()
    return (await session.execute(query)).first()


async def order_by_transaction(
    session: AsyncSession, provider: str, provider_transaction_id: str
) -> Row[Any] | None:
    return (
        await session.execute(
            select(recharge_orders).where(
                recharge_orders.c.provider == provider,
                recharge_orders.c.provider_transaction_id == provider_transaction_id,
            )
        )
    ).first()


async def update_order(session: AsyncSession, order_id: str, values: dict[str, Any]) -> Row[Any]:
    return (
        await session.execute(
            update(recharge_orders)
            .where(recharge_orders.c.id == order_id)
            .values(**values)
            .returning(recharge_orders)
        )
    ).one()


async def expire_orders(session: AsyncSession, before: datetime, limit: int) -> Sequence[Row[Any]]:
    due = (
        select(recharge_orders.c.id)
        .where(recharge_orders.c.status == "pending", recharge_orders.c.expires_at < before)
        .order_by(recharge_orders.c.expires_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    return (
        await session.execute(
            update(recharge_orders)
            .where(recharge_orders.c.id.in_(due))
            .values(status="expired", failure_reason="not paid before expiry")
            .returning(recharge_orders)
        )
    ).all()


async def pending_orders(
    session: AsyncSession,
    created_before: datetime | None,
    provider: str,
    after: tuple[datetime, str] | None,
    limit: int,
) -> Sequence[Row[Any]]:
    o = recharge_orders.c
    query = select(recharge_orders).where(o.status == "pending")
    if created_before is not None:
        query = query.where(o.created_at < created_before)
    if provider:
        query = query.where(o.provider == provider)
    if after is not None:
        at, last_id = after
        query = query.where(or_(o.created_at > at, and_(o.created_at == at, o.id > last_id)))
    return (await session.execute(query.order_by(o.created_at, o.id).limit(limit))).all()


async def all_orders(session: AsyncSession) -> Sequence[Row[Any]]:
    return (await session.execute(select(recharge_orders))).all()


# -- callbacks ------------------------------------------------------------------------------------


async def insert_callback(session: AsyncSession, values: dict[str, Any]) -> Row[Any] | None:
    return (
        await session.execute(
            pg_insert(callbacks)
            .values(**values)
            .on_conflict_do_nothing(index_elements=[callbacks.c.id])
            .returning(callbacks)
        )
    ).first()


async def get_callback(session: AsyncSession, callback_id: str) -> Row[Any] | None:
    return (await session.execute(select(callbacks).where(callbacks.c.id == callback_id))).first()


async def callbacks_by_ids(session: AsyncSession, ids: Sequence[str]) -> Sequence[Row[Any]]:
    if not ids:
        return []
    return (await session.execute(select(callbacks).where(callbacks.c.id.in_(ids)))).all()


async def list_callbacks(
    session: AsyncSession,
    *,
    user_id: str,
    order_id: str,
    provider: str,
    outcome: str,
    before_seq: int | None,
    limit: int,
) -> Sequence[Row[Any]]:
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
    return (await session.execute(query.order_by(c.seq.desc()).limit(limit))).all()


# -- reconciliation ---------------------------------------------------------------------------------


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


async def expired_pending_holds(session: AsyncSession, now: datetime) -> Sequence[Row[Any]]:
    return (
        await session.execute(
            select(transfers.c.id, transfers.c.expires_at).where(
                transfers.c.kind == "hold", transfers.c.status == "pending", transfers.c.expires_at <= now
            )
        )
    ).all()


async def hold_resolution_counts(session: AsyncSession) -> Sequence[Row[Any]]:
    """Holds whose resolving transfers disagree with their status (a hold resolves exactly once)."""
    hold = transfers.alias("hold")
    child = transfers.alias("child")
    resolutions = func.count(child.c.id)
    return (
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
        )
    ).all()


async def over_refunded(session: AsyncSession) -> Sequence[Row[Any]]:
    original = transfers.alias("original")
    refunds = transfers.alias("refunds")
    refunded = func.sum(refunds.c.amount)
    return (
        await session.execute(
            select(original.c.id, original.c.amount, refunded.label("refunded"))
            .select_from(
                original.join(
                    refunds, and_(refunds.c.linked_transfer_id == original.c.id, refunds.c.kind == "refund")
                )
            )
            .group_by(original.c.id, original.c.amount)
            .having(refunded > original.c.amount)
        )
    ).all()


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
