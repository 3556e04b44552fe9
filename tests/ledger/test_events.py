"""Settlement from real JetStream events: a redelivered TaskCompleted is settled once."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from sqlalchemy import func, select

from atelier.common.v1 import common_pb2
from atelier.events.v1 import events_pb2
from atelier.generation.v1 import generation_pb2
from atelier.workflow.v1 import workflow_pb2
from kit.bus import Bus
from kit.db import Database
from kit.money import Credits
from kit.outbox import Outbox
from kit.service import Runtime
from kit.settings import ServiceSettings
from services.ledger.events import RUNS_COMPLETED, TASKS_COMPLETED, Consumers
from services.ledger.models import outbox, transfers
from services.ledger.service import Kind, Ledger, Reference, Status

C = Credits.whole


@pytest.fixture
async def consumers(db: Database, bus: Bus, ledger: Ledger) -> AsyncIterator[Runtime]:
    """The ledger's consumers running against this run's NATS namespace (unique durable names)."""
    runtime = Runtime("ledger", ServiceSettings(), db, bus, asyncio.Event(), outbox=Outbox(outbox))
    handlers = Consumers(runtime, ledger)
    suffix = uuid.uuid4().hex[:6]
    tasks = [
        asyncio.create_task(
            bus.consume(
                durable=f"ledger-settlement-{suffix}",
                subject=TASKS_COMPLETED,
                handler=handlers.on_task_completed,
                stop=runtime.stop,
            )
        ),
        asyncio.create_task(
            bus.consume(
                durable=f"ledger-runs-{suffix}",
                subject=RUNS_COMPLETED,
                handler=handlers.on_run_completed,
                stop=runtime.stop,
            )
        ),
    ]
    yield runtime
    runtime.stop.set()
    await asyncio.gather(*tasks)


async def wait_for(check: Callable[[], Awaitable[bool]], within: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while asyncio.get_running_loop().time() < deadline:
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


async def kinds_of(db: Database, reference_id: str) -> list[str]:
    async with db.transaction() as session:
        rows = await session.execute(
            select(transfers.c.kind).where(transfers.c.reference_id == reference_id).order_by(transfers.c.seq)
        )
        return [row.kind for row in rows]


async def setup_hold(db: Database, ledger: Ledger, user: str, task_id: str, amount: int) -> str:
    hold_id = f"hold:{task_id}:1"
    async with db.transaction() as session:
        await ledger.credit(session, transfer_id=f"g:{user}", user_id=user, amount=C(10), kind=Kind.GRANT)
        await ledger.hold(
            session, transfer_id=hold_id, user_id=user, amount=C(amount), reference=Reference("task", task_id)
        )
    return hold_id


async def test_task_completed_twice_is_captured_once(
    db: Database, bus: Bus, ledger: Ledger, consumers: Runtime
) -> None:
    user, task_id = f"u-{uuid.uuid4().hex[:8]}", f"t-{uuid.uuid4().hex[:8]}"
    hold_id = await setup_hold(db, ledger, user, task_id, 4)
    event = events_pb2.TaskCompleted(
        meta=events_pb2.EventMeta(event_id=str(uuid.uuid4())),
        task_id=task_id,
        user_id=user,
        status=generation_pb2.TASK_STATUS_SUCCEEDED,
        price=common_pb2.Credits(milli=4000),
        charge=common_pb2.Credits(milli=2500),
        hold_id=hold_id,
    )
    # Two deliveries of the same event (a redelivery after a lost ack) and a duplicate under a new id.
    await bus.publish(TASKS_COMPLETED, event.SerializeToString(), msg_id=event.meta.event_id)
    await bus.publish(TASKS_COMPLETED, event.SerializeToString(), msg_id=f"{event.meta.event_id}-again")

    async def settled() -> bool:
        return "capture" in await kinds_of(db, task_id)

    await wait_for(settled)
    await asyncio.sleep(0.5)
    assert await kinds_of(db, task_id) == ["hold", "capture"]
    async with db.transaction() as session:
        balance = await ledger.balance(session, user)
        hold = await ledger.get_transfer(session, hold_id)
    assert (balance.available, balance.held, balance.posted) == (Credits(7500), C(0), Credits(7500))
    assert hold.status == Status.POSTED


async def test_failed_task_is_released_not_charged(
    db: Database, bus: Bus, ledger: Ledger, consumers: Runtime
) -> None:
    user, task_id = f"u-{uuid.uuid4().hex[:8]}", f"t-{uuid.uuid4().hex[:8]}"
    hold_id = await setup_hold(db, ledger, user, task_id, 3)
    event = events_pb2.TaskCompleted(
        meta=events_pb2.EventMeta(event_id=str(uuid.uuid4())),
        task_id=task_id,
        user_id=user,
        status=generation_pb2.TASK_STATUS_FAILED,
        hold_id=hold_id,
    )
    await bus.publish(TASKS_COMPLETED, event.SerializeToString(), msg_id=event.meta.event_id)

    async def released() -> bool:
        return "release" in await kinds_of(db, task_id)

    await wait_for(released)
    async with db.transaction() as session:
        balance = await ledger.balance(session, user)
        usage = await ledger.usage(session, user_id=user, from_time=None, to_time=None, group_by="day")
    assert (balance.available, balance.held) == (C(10), C(0))
    assert usage.total == C(0)


async def test_run_refund_is_applied_once(db: Database, bus: Bus, ledger: Ledger, consumers: Runtime) -> None:
    user, run_id = f"u-{uuid.uuid4().hex[:8]}", f"r-{uuid.uuid4().hex[:8]}"
    async with db.transaction() as session:
        await ledger.credit(session, transfer_id=f"g:{user}", user_id=user, amount=C(10), kind=Kind.GRANT)
        await ledger.debit(session, transfer_id=f"debit:{run_id}", user_id=user, amount=C(6))
    event = events_pb2.RunCompleted(
        meta=events_pb2.EventMeta(event_id=str(uuid.uuid4())),
        run_id=run_id,
        user_id=user,
        status=workflow_pb2.RUN_STATUS_FAILED,
        price=common_pb2.Credits(milli=6000),
        debit_transfer_id=f"debit:{run_id}",
        refund=common_pb2.Credits(milli=6000),
        refund_transfer_id=f"refund:{run_id}",
    )
    for suffix in ("", "-dup"):
        await bus.publish(RUNS_COMPLETED, event.SerializeToString(), msg_id=f"{event.meta.event_id}{suffix}")

    async def refunded() -> bool:
        async with db.transaction() as session:
            return (await ledger.balance(session, user)).available == C(10)

    await wait_for(refunded)
    await asyncio.sleep(0.5)
    async with db.transaction() as session:
        count = (
            await session.execute(
                select(func.count())
                .select_from(transfers)
                .where(transfers.c.linked_transfer_id == f"debit:{run_id}")
            )
        ).scalar_one()
        assert (await ledger.balance(session, user)).available == C(10)
    assert count == 1
