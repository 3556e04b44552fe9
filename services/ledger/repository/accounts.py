"""Queries of accounts: wallets locked for a transfer, system account shards, refused transfer ids."""

from __future__ import annotations

from typing import Any, TypedDict, Unpack

from sqlalchemy import func, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.ledger.models import accounts, failed_transfers
from services.ledger.repository.records import AccountRecord, WalletRecord, all_of, of


async def lock_wallet(session: AsyncSession, account_id: str, user_id: str, transfer_id: str) -> WalletRecord:
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
    return of(WalletRecord, row)


async def get_account(session: AsyncSession, account_id: str) -> AccountRecord | None:
    row = (await session.execute(select(accounts).where(accounts.c.id == account_id))).first()
    return of(AccountRecord, row) if row is not None else None


class Deltas(TypedDict, total=False):
    """A wallet's changes, in milli-credits (0 when left out): posted credits and debits, and pending
    debits (`held`)."""

    credits: int
    debits: int
    held: int


async def book(
    session: AsyncSession, wallet_id: str, system_id: str, user_id: str, **deltas: Unpack[Deltas]
) -> AccountRecord:
    """Double entry on a wallet the caller has locked and its counterpart system account: the wallet
    changes by `deltas`, then the system account's shard mirrors them (its debits, credits and pending
    credits). Returns the wallet's new row (version bumped)."""
    credits, debits, held = (deltas.get(name, 0) for name in ("credits", "debits", "held"))
    c = accounts.c
    row = (
        await session.execute(
            update(accounts)
            .where(c.id == wallet_id)
            .values(
                posted_credits=c.posted_credits + credits,
                posted_debits=c.posted_debits + debits,
                pending_debits=c.pending_debits + held,
                version=c.version + 1,
                updated_at=func.now(),
            )
            .returning(accounts)
        )
    ).one()
    await session.execute(
        _CHANGE_SYSTEM,
        {
            "account": system_id,
            "user_id": user_id,
            "posted_credits": debits,
            "posted_debits": credits,
            "pending_credits": held,
        },
    )
    return of(AccountRecord, row)


# System accounts are touched by every transfer of their kind: one row would serialize all wallets
# on its lock. Each is spread over 16 shard rows ("system:revenue#07"), chosen by the wallet's user in
# SQL (`ledger_system_row`, so the server-side hold and capture pick the same row), summed when read.
_CHANGE_SYSTEM = text(
    "SELECT ledger_change_system(ledger_system_row(:account, :user_id), "
    ":posted_credits, :posted_debits, :pending_credits)"
)


def logical_account(row_id: str) -> str:
    return row_id.split("#", 1)[0]


async def all_accounts(session: AsyncSession) -> list[AccountRecord]:
    return all_of(AccountRecord, await session.execute(select(accounts).order_by(accounts.c.id)))


async def record_failure(
    session: AsyncSession, transfer_id: str, code: str, message: str, request_hash: str
) -> None:
    await session.execute(
        pg_insert(failed_transfers)
        .values(id=transfer_id, code=code, message=message, request_hash=request_hash)
        .on_conflict_do_nothing(index_elements=[failed_transfers.c.id])
    )
