"""The fast path and the general path are one set of rules written twice (plpgsql `ledger_apply` and
Python): the same seeded random sequence of operations, run through each on a fresh database of its
own, must leave the same rows — transfers (holds included), accounts, usage rollup, refused ids — and
answer every operation the same way."""

from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import text

from kit.db import Database, drop_database, ensure_database, with_database
from kit.errors import DomainError
from kit.migrations import upgrade_async
from kit.money import Credits
from kit.outbox import Outbox
from services.ledger.models import outbox
from services.ledger.service import (
    CapturePlan,
    FastLane,
    HoldPlan,
    Kind,
    Ledger,
    Reference,
    TransferRefused,
    TransferResult,
)
from tests.conftest import ROOT
from tests.infra import Infra

USERS = ("ann", "bob", "cy")
MODELS = ("flux", "sdxl", "")
EXPIRES_AT = datetime(2100, 1, 1, tzinfo=UTC)

# Columns a run cannot reproduce: when a row was written.
# Row order is compared instead of `seq`, whose identity values a conflicting insert also consumes.
UNREPRODUCIBLE = {"seq", "created_at", "updated_at", "resolved_at"}


@dataclass
class Script:
    """A seeded random sequence of operations, with what it has made so far to aim the next at."""

    rng: random.Random
    ops: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    holds: list[str] = field(default_factory=list)
    charges: list[str] = field(default_factory=list)

    def next_op(self, n: int) -> tuple[str, dict[str, Any]]:
        rng = self.rng
        if self.ops and rng.random() < 0.1:
            return rng.choice(self.ops)  # a retry: same id, same body
        user = rng.choice(USERS)
        meta = {"model": rng.choice(MODELS), "kind": rng.choice(("image", "video"))}
        roll = rng.random()
        if roll < 0.15:
            op = ("grant", {"transfer_id": f"g{n}", "user_id": user, "amount": rng.randint(1, 40) * 500})
        elif roll < 0.45:
            op = (
                "hold",
                {"transfer_id": f"h{n}", "user_id": user, "amount": rng.randint(1, 20) * 250, "meta": meta},
            )
            self.holds.append(f"h{n}")
        elif roll < 0.7 and self.holds:
            hold = rng.choice(self.holds)
            amount = rng.choice([None, rng.randint(1, 30) * 100])
            op = ("capture", {"transfer_id": f"c{n}", "hold_id": hold, "amount": amount})
            self.charges.append(f"c{n}")
        elif roll < 0.8 and self.holds:
            op = ("release", {"transfer_id": f"r{n}", "hold_id": rng.choice(self.holds)})
        elif roll < 0.9:
            op = (
                "debit",
                {"transfer_id": f"d{n}", "user_id": user, "amount": rng.randint(1, 10) * 300, "meta": meta},
            )
            self.charges.append(f"d{n}")
        elif self.charges:
            original = rng.choice(self.charges)
            op = ("refund", {"transfer_id": f"f{n}", "original": original, "amount": rng.randint(1, 8) * 200})
        else:
            op = ("grant", {"transfer_id": f"g{n}", "user_id": user, "amount": 10_000})
        self.ops.append(op)
        return op


def script(seed: int, length: int) -> list[tuple[str, dict[str, Any]]]:
    made = Script(random.Random(seed))
    return [made.next_op(n) for n in range(length)]


Hot = Callable[[Database, Ledger, str, dict[str, Any]], Awaitable[TransferResult]]


async def general_path(db: Database, ledger: Ledger, op: str, args: dict[str, Any]) -> TransferResult:
    """Holds and captures step by step in Python, never touching `ledger_apply`."""
    async with db.transaction() as session:
        if op == "hold":
            return await ledger.hold_general(session, hold_plan(ledger, args))
        return await ledger.capture_general(session, capture_plan(ledger, args))


def fast_path(lane: FastLane, taken: list[str]) -> Hot:
    """Holds and captures as the servicer runs them: the group commit, then the general path when the
    step wrote nothing. `taken` collects the ids the fast path wrote."""

    async def run(db: Database, ledger: Ledger, op: str, args: dict[str, Any]) -> TransferResult:
        if op == "hold":
            hold = hold_plan(ledger, args)
            result = await lane.hold(hold)
            if result is not None:
                taken.append(hold.transfer_id)
            else:
                async with db.transaction() as session:
                    result = await ledger.hold_general(session, hold)
            return result
        capture = capture_plan(ledger, args)
        result = await lane.capture(capture)
        if result is not None:
            taken.append(capture.transfer_id)
        else:
            async with db.transaction() as session:
                result = await ledger.capture_general(session, capture)
        return result

    return run


def hold_plan(ledger: Ledger, args: dict[str, Any]) -> HoldPlan:
    return ledger.plan_hold(
        transfer_id=args["transfer_id"],
        user_id=args["user_id"],
        amount=Credits(args["amount"]),
        expires_at=EXPIRES_AT,
        reference=Reference("task", args["transfer_id"]),
        metadata=args["meta"],
    )


def capture_plan(ledger: Ledger, args: dict[str, Any]) -> CapturePlan:
    amount = Credits(args["amount"]) if args["amount"] is not None else None
    return ledger.plan_capture(transfer_id=args["transfer_id"], hold_id=args["hold_id"], amount=amount)


async def play(db: Database, hot: Hot, ops: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """Runs the operations one by one, each in the transaction(s) its edge would use; one answer each."""
    ledger = Ledger(Outbox(outbox))
    answers = []
    for op, args in ops:
        try:
            if op in ("hold", "capture"):
                result = await hot(db, ledger, op, args)
            else:
                async with db.transaction() as session:
                    result = await other(ledger, session, op, args)
        except TransferRefused as refused:
            async with db.transaction() as session:
                await ledger.record_failure(session, refused)
            answers.append(f"{op} {args['transfer_id']}: {refused.code}")
        except DomainError as error:
            answers.append(f"{op} {args['transfer_id']}: {error.code}")
        else:
            balance = result.balance
            answers.append(
                f"{op} {result.transfer.id}: {result.transfer.amount.milli} replayed={result.replayed} "
                f"balance={balance.available.milli}/{balance.held.milli}/{balance.posted.milli} "
                f"v{balance.version}"
            )
    return answers


async def other(ledger: Ledger, session: Any, op: str, args: dict[str, Any]) -> TransferResult:
    if op == "grant":
        return await ledger.credit(
            session,
            transfer_id=args["transfer_id"],
            user_id=args["user_id"],
            amount=Credits(args["amount"]),
            kind=Kind.GRANT,
        )
    if op == "release":
        return await ledger.release(session, transfer_id=args["transfer_id"], hold_id=args["hold_id"])
    if op == "debit":
        return await ledger.debit(
            session,
            transfer_id=args["transfer_id"],
            user_id=args["user_id"],
            amount=Credits(args["amount"]),
            reference=Reference("run", args["transfer_id"]),
            metadata=args["meta"],
        )
    assert op == "refund"
    return await ledger.refund(
        session,
        transfer_id=args["transfer_id"],
        original_transfer_id=args["original"],
        amount=Credits(args["amount"]),
    )


TABLES = {
    "transfers": "SELECT * FROM transfers ORDER BY seq",
    "accounts": "SELECT * FROM accounts ORDER BY id",
    # Per bucket over all hours: the two runs may straddle the turn of an hour.
    "usage_hourly": "SELECT user_id, model, kind, sum(spend_milli) AS spend_milli, sum(charges) AS charges "
    "FROM usage_hourly GROUP BY user_id, model, kind ORDER BY user_id, model, kind",
    "failed_transfers": "SELECT * FROM failed_transfers ORDER BY id",
}


async def rows(db: Database) -> dict[str, list[dict[str, Any]]]:
    found = {}
    async with db.transaction() as session:
        for table, query in TABLES.items():
            result = await session.execute(text(query))
            found[table] = [
                {k: v for k, v in row._mapping.items() if k not in UNREPRODUCIBLE} for row in result
            ]
    return found


@pytest.fixture
async def fresh(infra: Infra) -> AsyncIterator[Callable[[], Awaitable[Database]]]:
    """Fresh, migrated ledger databases, dropped after the test."""
    made: list[tuple[Database, str]] = []

    async def make() -> Database:
        url = with_database(infra.database_server, f"{infra.database_name('ledger')}_{uuid.uuid4().hex[:6]}")
        rendered = url.render_as_string(hide_password=False)
        await ensure_database(rendered)
        await upgrade_async(ROOT / "services" / "ledger" / "migrations", rendered)
        database = Database(rendered, application_name="atelier-tests")
        made.append((database, rendered))
        return database

    yield make
    for database, rendered in made:
        await database.dispose()
        await drop_database(rendered)


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_the_fast_and_the_general_path_leave_the_same_rows(
    fresh: Callable[[], Awaitable[Database]], seed: int
) -> None:
    ops = script(seed, 160)
    assert {op for op, _ in ops} >= {"grant", "hold", "capture", "release", "debit", "refund"}

    general_db = await fresh()
    general = await play(general_db, general_path, ops)

    fast_db = await fresh()
    lane = FastLane(Ledger(Outbox(outbox)), fast_db.connect)
    taken: list[str] = []
    try:
        fast = await play(fast_db, fast_path(lane, taken), ops)
    finally:
        await lane.close()

    assert fast == general
    # Some operations succeeded, some were refused, some replayed: the sequence covers the paths.
    assert any("replayed=True" in answer for answer in general)
    assert any("insufficient_balance" in answer for answer in general)
    assert {t[0] for t in taken} == {"h", "c"}, "holds and captures both went through ledger_apply"
    expected, actual = await rows(general_db), await rows(fast_db)
    for table in TABLES:
        assert actual[table] == expected[table], table
    assert len(expected["transfers"]) > 50
