"""Reconcile finds every broken invariant, in-process and as the `atelier reconcile` command."""

from __future__ import annotations

import asyncio
import os
import sys
from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from kit.db import Database
from kit.money import Credits, Money
from services.ledger.service import Kind, Ledger

C = Credits.whole


async def populate(db: Database, ledger: Ledger) -> None:
    async with db.transaction() as session:
        await ledger.credit(
            session, transfer_id="g1", user_id="alice", amount=C(20), kind=Kind.GRANT, actor_id="a"
        )
        await ledger.hold(session, transfer_id="h1", user_id="alice", amount=C(5))
        await ledger.capture(session, transfer_id="c1", hold_id="h1", amount=C(4))
        await ledger.debit(session, transfer_id="d1", user_id="alice", amount=C(3))
        await ledger.refund(session, transfer_id="r1", original_transfer_id="d1", amount=C(1))
        await ledger.adjust(
            session, transfer_id="a1", user_id="alice", amount=C(-2), reason="fix", actor_id="a"
        )
        await ledger.create_order(
            session,
            order_id="o1",
            user_id="bob",
            method="card",
            provider="stripe",
            amount=Money(500, "USD"),
            plan_code="",
            paid_credits=C(35),
            bonus_credits=C(5),
            catalog_version=1,
            expires_at=None,
        )
        await ledger.complete_order(
            session, order_id="o1", provider_transaction_id="pi_1", paid=Money(500, "USD")
        )


async def run_reconcile(db: Database, *command: str) -> tuple[int, str]:
    env = {
        **os.environ,
        "ATELIER_DATABASE_URL": db.url.render_as_string(hide_password=False),
        "ATELIER_SWEEP_INTERVAL_SECONDS": "0.1",  # expired holds count after 0.2 s
    }
    process = await asyncio.create_subprocess_exec(
        *command, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    output, _ = await process.communicate()
    return process.returncode or 0, output.decode()


async def test_a_healthy_ledger_reconciles(private_db: Database, ledger: Ledger) -> None:
    await populate(private_db, ledger)
    async with private_db.transaction() as session:
        report = await ledger.reconcile(session)
    assert report.violations == []
    assert report.orders_checked == 1
    assert report.transfers_checked == 8  # g1 h1 c1 d1 r1 a1 + recharge and bonus
    code, output = await run_reconcile(private_db, sys.executable, "-m", "services.ledger", "reconcile")
    assert code == 0, output
    assert "0 violation(s)" in output


async def test_corruption_is_found_and_named(private_db: Database, ledger: Ledger) -> None:
    await populate(private_db, ledger)
    async with private_db.transaction() as session:
        # A balance changed behind the ledger's back, a hold left pending past its expiry, and a
        # recharge credited twice.
        await session.execute(
            text("UPDATE accounts SET posted_credits = posted_credits + 1000 WHERE id = 'user:alice'")
        )
        await ledger.hold(session, transfer_id="h2", user_id="alice", amount=C(1), ttl=timedelta(seconds=1))
        await session.execute(
            text(
                "INSERT INTO transfers (id, kind, debit_account, credit_account, amount, status, user_id,"
                " reference_type, reference_id, request_hash) VALUES ('dup', 'recharge',"
                " 'system:payments:stripe:USD', 'user:bob', 35000, 'posted', 'bob',"
                " 'recharge_order', 'o1', 'x')"
            )
        )
    async with private_db.transaction() as session:
        report = await ledger.reconcile(session, now=datetime.now(UTC) + timedelta(seconds=5))
    found = {(v.invariant, v.subject) for v in report.violations}
    assert ("balances_sum_nonzero", "*") in found
    assert ("stored_balance_mismatch", "user:alice") in found
    assert ("stored_balance_mismatch", "user:bob") in found
    assert ("expired_hold_pending", "h2") in found
    assert ("order_credit_count", "o1") in found

    await asyncio.sleep(1.1)  # h2 expires for the command's clock too
    code, output = await run_reconcile(
        private_db, os.path.join(os.path.dirname(sys.executable), "atelier"), "reconcile"
    )
    assert code == 1, output
    for invariant, subject in found:
        assert f"VIOLATION {invariant} {subject}:" in output


async def test_a_negative_wallet_is_reported(private_db: Database, ledger: Ledger) -> None:
    async with private_db.transaction() as session:
        await ledger.credit(session, transfer_id="g1", user_id="carol", amount=C(1), kind=Kind.GRANT)
        await session.execute(text("ALTER TABLE accounts DROP CONSTRAINT ck_accounts_wallet_not_negative"))
        await session.execute(text("UPDATE accounts SET posted_debits = 5000 WHERE id = 'user:carol'"))
    async with private_db.transaction() as session:
        report = await ledger.reconcile(session)
    assert ("wallet_negative", "user:carol") in {(v.invariant, v.subject) for v in report.violations}
