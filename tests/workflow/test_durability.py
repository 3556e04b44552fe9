"""kill -9 of the workflow process at several points of a run: it resumes at its first unfinished
step with one debit, each step submitted as one task, and one refund when one is owed. Plus two
replicas sharing the work."""

from __future__ import annotations

import asyncio
from collections import Counter

from sqlalchemy import select

from atelier.ledger.v1 import ledger_pb2
from atelier.workflow.v1 import workflow_pb2
from kit.db import Database
from services.workflow.models import outbox
from tests.workflow.conftest import Client, Process, StartService, settled, user
from tests.workflow.fakes import Fakes, inputs_for

SUCCEEDED = workflow_pb2.RUN_STATUS_SUCCEEDED


async def subjects(db: Database) -> Counter[str]:
    async with db.session() as session:
        return Counter((await session.execute(select(outbox.c.subject))).scalars())


def assert_each_step_once(fakes: Fakes, steps: int) -> None:
    created = fakes.generation.created()
    assert len(created) == steps, created
    assert set(created.values()) == {1}, created


async def run_id_of(db: Database) -> str:
    from services.workflow.models import runs

    async with db.session() as session:
        (run_id,) = (await session.execute(select(runs.c.id))).scalars().all()
        return str(run_id)


async def test_killed_after_the_ledger_debited_but_before_it_answered(
    process: tuple[Process, Client], fakes: Fakes, db: Database
) -> None:
    service, client = process
    alice = user()
    fakes.ledger.posted[alice.user_id] = 5_000
    fakes.ledger.debit_gate.armed = True
    await service.start()

    starting = asyncio.create_task(
        client.start(alice, "health-supplement", inputs_for(fakes, alice.user_id, "x"))
    )
    await asyncio.wait_for(fakes.ledger.debit_gate.reached.wait(), 10)
    service.kill()  # the debit is applied, the run row is still `debiting`
    starting.cancel()
    fakes.ledger.debit_gate.armed = False

    await service.start()
    run = await client.wait(alice, await run_id_of(db), settled, within=20)

    assert run.status == SUCCEEDED
    assert fakes.ledger.balance(alice.user_id) == 4_000
    assert [t.id for t in fakes.ledger.of_kind(ledger_pb2.TRANSFER_KIND_DEBIT)] == [f"run:{run.id}:debit"]
    assert fakes.ledger.calls["Debit"] == 2  # the recovery replayed the same id
    assert_each_step_once(fakes, 4)
    counts = await subjects(db)
    assert counts["runs.started"] == 1
    assert counts["runs.completed"] == 1


async def test_killed_while_submitting_a_step(
    process: tuple[Process, Client], fakes: Fakes, db: Database
) -> None:
    service, client = process
    alice = user()
    fakes.ledger.posted[alice.user_id] = 20_000
    fakes.generation.gate_step = "image"
    fakes.generation.submit_gate.armed = True
    await service.start()

    started = await client.start(alice, "creator-video", inputs_for(fakes, alice.user_id, "x"))
    await asyncio.wait_for(fakes.generation.submit_gate.reached.wait(), 10)
    service.kill()  # generation created the image task; the workflow never heard back
    fakes.generation.submit_gate.armed = False

    await service.start()
    key = f"run:{started.run.id}:step:1:image"
    for _ in range(200):  # the resume loop submits the step again with the same key
        if sum(r.idempotency_key == key for r in fakes.generation.requests) == 2:
            break
        await asyncio.sleep(0.05)
    # the killed call's handler was canceled with it; the task itself runs on and completes
    await fakes.generation.complete(fakes.generation.task_for("image").id)
    run = await client.wait(alice, started.run.id, settled, within=20)

    assert run.status == SUCCEEDED
    assert_each_step_once(fakes, 4)
    submissions = Counter(r.idempotency_key for r in fakes.generation.requests)
    assert submissions[key] == 2  # resubmitted once, deduplicated by generation
    assert run.steps[1].task_id == fakes.generation.task_for("image").id
    assert fakes.ledger.balance(alice.user_id) == 0
    assert fakes.ledger.calls["Debit"] == 1


async def test_killed_while_waiting_and_the_step_finishes_meanwhile(
    process: tuple[Process, Client], fakes: Fakes, db: Database
) -> None:
    service, client = process
    alice = user()
    fakes.ledger.posted[alice.user_id] = 12_000
    fakes.generation.auto = False
    await service.start()

    started = await client.start(alice, "ecom-video-pro", inputs_for(fakes, alice.user_id, "ecom-video-pro"))
    image = fakes.generation.task_for("image")
    service.kill()
    # A pull request of the dead process lives on for its 1 s expiry; a message handed to it would
    # only come back after ack_wait. Publish once it has expired: the event waits on the durable
    # consumer while the service is down.
    await asyncio.sleep(1.2)
    event = await fakes.generation.complete(image.id)
    await service.start()
    # the same event again after the restart (another NATS message id, same event id): a duplicate
    await fakes.generation.bus.publish(
        "tasks.completed", event.SerializeToString(), msg_id=f"{event.meta.event_id}:again"
    )
    await client.wait(alice, started.run.id, lambda r: bool(r.steps[1].task_id))
    video = fakes.generation.task_for("video")
    service.kill()
    await asyncio.sleep(1.2)
    await service.start()
    await fakes.generation.complete(video.id)
    run = await client.wait(alice, started.run.id, settled)

    assert run.status == SUCCEEDED
    assert_each_step_once(fakes, 2)
    assert fakes.ledger.balance(alice.user_id) == 0
    counts = await subjects(db)
    assert counts["runs.completed"] == 1
    assert counts["runs.progress"] == 4


async def test_killed_while_refunding(process: tuple[Process, Client], fakes: Fakes, db: Database) -> None:
    service, client = process
    alice = user()
    fakes.ledger.posted[alice.user_id] = 1_000
    fakes.generation.fail_steps = {"prompt-video"}
    fakes.ledger.refund_gate.armed = True
    await service.start()

    started = await client.start(alice, "health-supplement", inputs_for(fakes, alice.user_id, "x"))
    await asyncio.wait_for(fakes.ledger.refund_gate.reached.wait(), 10)
    service.kill()  # refunded in the ledger, not yet recorded by the workflow
    fakes.ledger.refund_gate.armed = False

    await service.start()
    run = await client.wait(alice, started.run.id, settled)

    assert run.status == workflow_pb2.RUN_STATUS_FAILED
    assert run.refund_amount.milli == 1_000
    assert run.refund_transfer_id == f"run:{run.id}:refund"
    assert fakes.ledger.balance(alice.user_id) == 1_000
    assert len(fakes.ledger.of_kind(ledger_pb2.TRANSFER_KIND_REFUND)) == 1
    assert fakes.ledger.calls["Refund"] == 2
    assert_each_step_once(fakes, 3)
    assert (await subjects(db))["runs.completed"] == 1


async def test_two_replicas_share_runs_without_doing_anything_twice(
    start_service: StartService, fakes: Fakes, db: Database
) -> None:
    first, second = await start_service(), await start_service()
    users = [user() for _ in range(6)]
    for who in users:
        fakes.ledger.posted[who.user_id] = 20_000
    started = await asyncio.gather(
        *(
            (first if i % 2 else second).client.start(
                who, "creator-video", inputs_for(fakes, who.user_id, "x")
            )
            for i, who in enumerate(users)
        )
    )
    runs = await asyncio.gather(
        *(first.client.wait(who, s.run.id, settled, within=30) for who, s in zip(users, started, strict=True))
    )

    assert all(run.status == SUCCEEDED for run in runs)
    assert_each_step_once(fakes, 4 * len(users))
    assert all(fakes.ledger.balance(who.user_id) == 0 for who in users)
    assert len(fakes.ledger.of_kind(ledger_pb2.TRANSFER_KIND_DEBIT)) == len(users)
    counts = await subjects(db)
    assert counts["runs.started"] == len(users)
    assert counts["runs.completed"] == len(users)
    assert counts["runs.progress"] == 8 * len(users)
