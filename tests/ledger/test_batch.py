"""Group commit: concurrent holds and captures share a transaction without weakening any guarantee,
and a failure inside a batch leaves every other request in it correct."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Sequence

import pytest
from opentelemetry import trace
from sqlalchemy import func, select

from kit.db import Database
from kit.errors import DomainError
from kit.money import Credits
from services.ledger import metrics as ledger_metrics
from services.ledger.batch import Connection, GroupCommit
from services.ledger.models import outbox, transfers
from services.ledger.service import FastStep, Kind, Ledger, TransferRefused, TransferResult

C = Credits.whole
ONE = C(1)


class Recorded:
    """`Ledger.apply_fast`, recording each batch's size and failure; `poison` fails a batch holding it
    after its statements ran."""

    def __init__(self, ledger: Ledger, poison: str = "") -> None:
        self.ledger = ledger
        self.poison = poison
        self.sizes: list[int] = []
        self.failures = 0

    async def __call__(
        self, connection: Connection, steps: Sequence[FastStep]
    ) -> list[TransferResult | None]:
        self.sizes.append(len(steps))
        try:
            results = await self.ledger.apply_fast(connection, steps)
            if any(step.params["id"] == self.poison for step in steps):
                raise RuntimeError("the process died in the middle of a batch")
        except Exception:
            self.failures += 1
            raise
        return results


async def hold(
    db: Database,
    ledger: Ledger,
    batch: GroupCommit[FastStep, TransferResult],
    transfer_id: str,
    user: str,
    amount: Credits = ONE,
) -> str:
    """As the servicer does it: the batch, else the general path alone (recording a refusal).
    "ok" or the error's code."""
    plan = ledger.plan_hold(transfer_id=transfer_id, user_id=user, amount=amount)
    try:
        if await batch.run(ledger.hold_step(plan)) is None:
            try:
                async with db.transaction() as session:
                    await ledger.hold_general(session, plan)
            except TransferRefused as refused:
                async with db.transaction() as session:
                    await ledger.record_failure(session, refused)
                raise
    except DomainError as exc:
        return exc.code
    return "ok"


async def fund(db: Database, ledger: Ledger, user: str, whole: int) -> None:
    async with db.transaction() as session:
        await ledger.credit(
            session, transfer_id=f"fund:{user}", user_id=user, amount=C(whole), kind=Kind.GRANT
        )


MakeBatch = Callable[["Recorded"], GroupCommit[FastStep, TransferResult]]


@pytest.fixture
async def group_commit(private_db: Database) -> AsyncIterator[MakeBatch]:
    """Makes group commits on the test's database; their connections are closed afterwards."""
    made: list[GroupCommit[FastStep, TransferResult]] = []

    def make(apply: Recorded) -> GroupCommit[FastStep, TransferResult]:
        made.append(GroupCommit(private_db.connect, apply))
        return made[-1]

    yield make
    for batch in made:
        await batch.close()


async def count(db: Database, table: object, *where: object) -> int:
    async with db.transaction() as session:
        query = select(func.count()).select_from(table).where(*where)  # type: ignore[arg-type]
        return int((await session.execute(query)).scalar_one())


async def test_fifty_concurrent_holds_in_batches_never_overdraw(
    private_db: Database, ledger: Ledger, group_commit: MakeBatch
) -> None:
    users = [f"u{i}" for i in range(5)]
    for user in users:
        await fund(private_db, ledger, user, 10)
    apply = Recorded(ledger)
    batch = group_commit(apply)
    outcomes = await asyncio.gather(
        *(hold(private_db, ledger, batch, f"hold:{user}:{i}", user) for i in range(50) for user in users)
    )
    assert max(apply.sizes) > 1, "the requests were never batched"
    assert sorted(outcomes) == ["insufficient_balance"] * 200 + ["ok"] * 50  # ten per wallet
    async with private_db.transaction() as session:
        for user in users:
            balance = await ledger.balance(session, user)
            assert (balance.available, balance.held) == (C(0), C(10))
        assert not (await ledger.reconcile(session)).violations
    # One balances.changed per transfer: five fundings and fifty holds.
    assert await count(private_db, outbox) == 55


async def test_a_capture_queued_after_its_hold_sees_it(
    private_db: Database, ledger: Ledger, group_commit: MakeBatch
) -> None:
    await fund(private_db, ledger, "ann", 5)
    apply = Recorded(ledger)
    batch = group_commit(apply)
    held = ledger.hold_step(ledger.plan_hold(transfer_id="h", user_id="ann", amount=C(2)))
    captured = ledger.capture_step(ledger.plan_capture(transfer_id="c", hold_id="h", amount=C(1)))
    first, second = await asyncio.gather(batch.run(held), batch.run(captured))
    assert apply.sizes == [1, 1] or apply.sizes == [2]
    assert first is not None
    assert second is not None
    assert second.hold is not None
    assert second.hold.id == "h"
    assert (second.balance.available, second.balance.held, second.balance.posted) == (C(4), C(0), C(4))


@pytest.mark.parametrize("failure", ["crash", "database_error"])
async def test_a_failure_inside_a_batch_leaves_the_others_correct(
    private_db: Database, ledger: Ledger, group_commit: MakeBatch, failure: str
) -> None:
    """The process fails after the batch's statements ran, or one statement fails in PostgreSQL (an
    amount beyond bigint) and aborts the pipeline: the batch rolls back, each request goes alone."""
    users = [f"v{i}" for i in range(8)]
    for user in users:
        await fund(private_db, ledger, user, 3)
    poison = "hold:v3:1"
    apply = Recorded(ledger, poison=poison if failure == "crash" else "")
    batch = group_commit(apply)
    huge = Credits(10**19) if failure == "database_error" else C(1)
    rollbacks = ledger_metrics.BATCH_ROLLBACKS._value.get()
    ids = [(f"hold:{user}:{i}", user) for i in range(4) for user in users]
    outcomes = await asyncio.gather(
        *(hold(private_db, ledger, batch, i, user, huge if i == poison else C(1)) for i, user in ids)
    )
    assert apply.sizes[0] > 1, "the poisoned request was not batched with others"
    assert apply.failures == 1
    assert ledger_metrics.BATCH_ROLLBACKS._value.get() == rollbacks + 1
    # Each wallet holds 3 of its 4 requests, whatever batch they were in and however it ended (alone,
    # the crash-poisoned request goes through; the huge amount is refused).
    assert sorted(outcomes) == ["insufficient_balance"] * 8 + ["ok"] * 24
    for user in users:
        holds = await count(private_db, transfers, transfers.c.user_id == user, transfers.c.kind == "hold")
        assert holds == 3
    async with private_db.transaction() as session:
        assert not (await ledger.reconcile(session)).violations
    assert await count(private_db, outbox) == 8 + 24


async def test_a_batched_transfer_keeps_its_requests_trace(
    private_db: Database, ledger: Ledger, group_commit: MakeBatch
) -> None:
    await fund(private_db, ledger, "tia", 3)
    batch = group_commit(Recorded(ledger))
    trace_ids = [uuid.uuid4().int & ((1 << 128) - 1) for _ in range(3)]

    async def traced(trace_id: int, i: int) -> TransferResult | None:
        context = trace.SpanContext(trace_id=trace_id, span_id=0xABC, is_remote=True)
        with trace.use_span(trace.NonRecordingSpan(context)):
            plan = ledger.plan_hold(transfer_id=f"t{i}", user_id="tia", amount=C(1))
        return await batch.run(ledger.hold_step(plan))

    results = await asyncio.gather(*(traced(t, i) for i, t in enumerate(trace_ids)))
    async with private_db.transaction() as session:
        for i, (trace_id, result) in enumerate(zip(trace_ids, results, strict=True)):
            assert result is not None
            stored = (await ledger.get_transfer(session, f"t{i}")).trace_id
            assert stored == result.transfer.trace_id == format(trace_id, "032x")
        headers = [row.headers for row in await session.execute(select(outbox.c.headers))]
    for trace_id in trace_ids:  # the W3C traceparent of each request travels with its event
        assert sum(format(trace_id, "032x") in h.get("traceparent", "") for h in headers) == 1


async def test_batches_of_two_replicas_never_deadlock(
    private_db: Database, ledger: Ledger, group_commit: MakeBatch
) -> None:
    """Two replicas (two group commits, two connections) batch the same wallets and holds in opposite
    orders. In step order their row locks would cross and PostgreSQL would abort one batch as a
    deadlock; `ledger_apply` takes them in one global order instead, so every batch commits."""
    users = [f"r{i:02}" for i in range(12)]
    for user in users:
        await fund(private_db, ledger, user, 10)
    first, second = Recorded(ledger), Recorded(ledger)
    replicas = (group_commit(first), group_commit(second))

    async def capture(batch: GroupCommit[FastStep, TransferResult], hold_id: str) -> str:
        plan = ledger.plan_capture(transfer_id=f"capture:{hold_id}", hold_id=hold_id)
        return "ok" if await batch.run(ledger.capture_step(plan)) is not None else "alone"

    for n in range(3):
        outcomes = await asyncio.gather(
            *(hold(private_db, ledger, replicas[0], f"h{n}:a:{user}", user) for user in users),
            *(hold(private_db, ledger, replicas[1], f"h{n}:b:{user}", user) for user in reversed(users)),
        )
        assert outcomes == ["ok"] * 2 * len(users)
        outcomes = await asyncio.gather(
            *(capture(replicas[0], f"h{n}:b:{user}") for user in users),
            *(capture(replicas[1], f"h{n}:a:{user}") for user in reversed(users)),
        )
        assert outcomes == ["ok"] * 2 * len(users)
    assert max(first.sizes) > 1
    assert max(second.sizes) > 1
    assert first.failures == second.failures == 0, "a batch was aborted (deadlock)"
    async with private_db.transaction() as session:
        for user in users:
            balance = await ledger.balance(session, user)
            assert (balance.available, balance.held) == (C(4), C(0))
        assert not (await ledger.reconcile(session)).violations
