"""Runs end to end against the fakes, real PostgreSQL and real NATS: each template, failures and
refunds, duplicate, out-of-order and lost completions, cancel."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from google.protobuf import struct_pb2
from sqlalchemy import select

from atelier.events.v1 import events_pb2
from atelier.generation.v1 import generation_pb2
from atelier.ledger.v1 import ledger_pb2
from atelier.workflow.v1 import workflow_pb2
from kit.db import Database
from services.workflow.models import outbox
from tests.workflow.conftest import StartService, settled, user
from tests.workflow.fakes import Fakes, inputs_for

RUN = workflow_pb2
STEP_SUCCEEDED = workflow_pb2.STEP_STATUS_SUCCEEDED


async def events_by_subject(db: Database) -> Counter[str]:
    async with db.session() as session:
        rows = (await session.execute(select(outbox.c.subject))).scalars()
        return Counter(rows)


async def completed_events(db: Database) -> list[events_pb2.RunCompleted]:
    async with db.session() as session:
        rows = (
            await session.execute(select(outbox.c.payload).where(outbox.c.subject == "runs.completed"))
        ).scalars()
        return [events_pb2.RunCompleted.FromString(payload) for payload in rows]


@pytest.mark.parametrize(
    ("template", "price", "steps"),
    [
        ("health-supplement", 1000, ["prompt-image", "image", "prompt-video", "video"]),
        ("creator-video", 20000, ["prompt-image", "image", "prompt-video", "video"]),
        ("ecom-video-pro", 12000, ["image", "video"]),
    ],
)
async def test_each_template_runs_end_to_end(
    start_service: StartService, fakes: Fakes, db: Database, template: str, price: int, steps: list[str]
) -> None:
    service = await start_service()
    alice = user()
    fakes.ledger.posted[alice.user_id] = 50_000

    started = await service.client.start(alice, template, inputs_for(fakes, alice.user_id, template))
    assert started.created
    run = await service.client.wait(alice, started.run.id, settled)

    assert run.status == RUN.RUN_STATUS_SUCCEEDED
    assert [s.key for s in run.steps] == steps
    assert all(s.status == STEP_SUCCEEDED and s.task_id and s.outputs for s in run.steps)
    assert all(s.started_at.seconds and s.finished_at.seconds for s in run.steps)
    assert run.price.milli == price
    assert run.refund_amount.milli == 0
    assert run.template_snapshot.code == template
    assert run.catalog_version == 7
    # one debit with the id derived from the run, no refund
    assert fakes.ledger.balance(alice.user_id) == 50_000 - price
    assert run.debit_transfer_id == f"run:{run.id}:debit"
    debits = fakes.ledger.of_kind(ledger_pb2.TRANSFER_KIND_DEBIT)
    assert [d.id for d in debits] == [run.debit_transfer_id]
    assert debits[0].reference.type == ledger_pb2.REFERENCE_TYPE_RUN
    assert debits[0].reference.id == run.id
    assert not fakes.ledger.of_kind(ledger_pb2.TRANSFER_KIND_REFUND)
    # one internal task per step, each output feeding the next
    assert set(fakes.generation.created().values()) == {1}
    assert len(fakes.generation.created()) == len(steps)
    tasks = {key: fakes.generation.task_for(key) for key in steps}
    assert all(t.internal and t.workflow_step.run_id == run.id for t in tasks.values())
    if "prompt-image" in tasks:
        photos = run.inputs["productPhotos"]
        assert isinstance(photos, struct_pb2.ListValue)
        assert tasks["prompt-image"].inputs[0].upload_id == photos[0]
        assert tasks["image"].prompt == f"prompt from {tasks['prompt-image'].id}"
        assert tasks["prompt-video"].prompt.startswith("Write a short promotional video prompt")
        assert tasks["video"].prompt == f"prompt from {tasks['prompt-video'].id}"
    video_input = tasks["video"].inputs[0]
    assert video_input.output_id == f"out_{tasks['image'].id}"
    assert video_input.role == generation_pb2.INPUT_ROLE_FIRST_FRAME
    assert tasks["video"].ratio == run.inputs["ratio"]
    # events: started once, completed once, progress for each step start and finish
    await asyncio.sleep(0.1)
    subjects = await events_by_subject(db)
    assert subjects["runs.started"] == 1
    assert subjects["runs.completed"] == 1
    assert subjects["runs.progress"] == 2 * len(steps)
    (completed,) = await completed_events(db)
    assert completed.status == RUN.RUN_STATUS_SUCCEEDED
    assert completed.refund.milli == 0


async def test_failing_step_refunds_in_full_by_default(
    start_service: StartService, fakes: Fakes, db: Database
) -> None:
    service = await start_service()
    alice = user()
    fakes.ledger.posted[alice.user_id] = 5_000
    fakes.generation.fail_steps = {"image"}

    started = await service.client.start(alice, "health-supplement", inputs_for(fakes, alice.user_id, "x"))
    run = await service.client.wait(alice, started.run.id, settled)

    assert run.status == RUN.RUN_STATUS_FAILED
    assert run.error.code == "provider_error"
    assert [s.status for s in run.steps] == [
        STEP_SUCCEEDED,
        RUN.STEP_STATUS_FAILED,
        RUN.STEP_STATUS_SKIPPED,
        RUN.STEP_STATUS_SKIPPED,
    ]
    assert run.steps[1].error.code == "provider_error"
    assert run.refund_amount.milli == 1000
    assert run.refund_transfer_id == f"run:{run.id}:refund"
    assert fakes.ledger.balance(alice.user_id) == 5_000  # debited 1, refunded 1
    (refund,) = fakes.ledger.of_kind(ledger_pb2.TRANSFER_KIND_REFUND)
    assert refund.linked_transfer_id == run.debit_transfer_id
    assert refund.amount.milli == 1000
    assert len(fakes.generation.created()) == 2  # the later steps were never submitted
    (completed,) = await completed_events(db)
    assert completed.status == RUN.RUN_STATUS_FAILED
    assert completed.refund.milli == 1000
    assert completed.refund_transfer_id == run.refund_transfer_id


async def test_proportional_policy_refunds_the_unfinished_steps(
    start_service: StartService, fakes: Fakes
) -> None:
    service = await start_service()
    alice = user()
    fakes.ledger.posted[alice.user_id] = 20_000
    fakes.generation.fail_steps = {"prompt-video"}  # 2 of 4 steps done

    started = await service.client.start(alice, "creator-video", inputs_for(fakes, alice.user_id, "x"))
    run = await service.client.wait(alice, started.run.id, settled)

    assert run.status == RUN.RUN_STATUS_FAILED
    assert run.refund_amount.milli == 20_000 * 2 // 4
    assert fakes.ledger.balance(alice.user_id) == 10_000


async def test_a_step_refused_at_submission_fails_the_run_and_refunds(
    start_service: StartService, fakes: Fakes
) -> None:
    service = await start_service()
    alice = user()
    fakes.ledger.posted[alice.user_id] = 12_000
    fakes.generation.refuse["video"] = "model_disabled"

    started = await service.client.start(
        alice, "ecom-video-pro", inputs_for(fakes, alice.user_id, "ecom-video-pro")
    )
    run = await service.client.wait(alice, started.run.id, settled)

    assert run.status == RUN.RUN_STATUS_FAILED
    assert run.error.code == "model_disabled"
    assert run.steps[1].status == RUN.STEP_STATUS_FAILED
    assert not run.steps[1].task_id
    assert fakes.ledger.balance(alice.user_id) == 12_000


async def test_duplicate_and_out_of_order_completions_change_nothing(
    start_service: StartService, fakes: Fakes, db: Database
) -> None:
    service = await start_service()
    alice = user()
    fakes.ledger.posted[alice.user_id] = 12_000
    fakes.generation.auto = False
    gen = fakes.generation

    started = await service.client.start(
        alice, "ecom-video-pro", inputs_for(fakes, alice.user_id, "ecom-video-pro")
    )
    run_id = started.run.id
    image = gen.task_for("image")

    # a completion of a task that is not the step's (a stale or foreign task) is ignored
    stray = gen.completion(image.id, succeeded=True)
    stray.task_id = "task_stray"
    await gen.publish(stray)
    # the image succeeds; the same event delivered again (new delivery, same id) and a late
    # contradicting FAILED event for the same task are both ignored
    first = gen.completion(image.id, succeeded=True)
    await gen.publish(first)
    await service.client.wait(alice, run_id, lambda r: r.steps[0].status == STEP_SUCCEEDED)
    await fakes.generation.bus.publish(
        "tasks.completed", first.SerializeToString(), msg_id=f"{first.meta.event_id}-again"
    )
    await gen.complete(image.id, succeeded=False)
    video = await asyncio.wait_for(_task_when_submitted(fakes, "video"), 5)
    # out of order: the video "completes" as FAILED then SUCCEEDED; only the first one counts
    await gen.complete(video.id, succeeded=True)
    run = await service.client.wait(alice, run_id, settled)
    await gen.complete(video.id, succeeded=False)
    await asyncio.sleep(0.5)

    run = await service.client.get(alice, run_id)
    assert run.status == RUN.RUN_STATUS_SUCCEEDED
    assert [s.status for s in run.steps] == [STEP_SUCCEEDED, STEP_SUCCEEDED]
    assert run.steps[0].task_id == image.id
    assert run.steps[0].outputs[0].id == f"out_{image.id}"
    assert fakes.ledger.balance(alice.user_id) == 0
    assert not fakes.ledger.of_kind(ledger_pb2.TRANSFER_KIND_REFUND)
    assert len(gen.created()) == 2
    subjects = await events_by_subject(db)
    assert subjects["runs.completed"] == 1
    assert subjects["runs.progress"] == 4


async def _task_when_submitted(fakes: Fakes, step_key: str) -> generation_pb2.Task:
    while True:
        matches = [t for t in fakes.generation.tasks.values() if t.workflow_step.step_key == step_key]
        if matches:
            return matches[0]
        await asyncio.sleep(0.02)


async def test_a_completion_for_a_step_not_yet_started_is_ignored(
    start_service: StartService, fakes: Fakes
) -> None:
    service = await start_service()
    alice = user()
    fakes.ledger.posted[alice.user_id] = 12_000
    fakes.generation.auto = False
    started = await service.client.start(
        alice, "ecom-video-pro", inputs_for(fakes, alice.user_id, "ecom-video-pro")
    )
    image = fakes.generation.task_for("image")
    early = fakes.generation.completion(image.id, succeeded=True)
    early.step_key = "video"  # claims to finish the step after the running one
    await fakes.generation.publish(early)
    await asyncio.sleep(0.5)
    run = await service.client.get(alice, started.run.id)
    assert [s.status for s in run.steps] == [RUN.STEP_STATUS_RUNNING, RUN.STEP_STATUS_PENDING]


async def test_cancel_refunds_and_skips_the_rest(
    start_service: StartService, fakes: Fakes, db: Database
) -> None:
    service = await start_service()
    alice = user()
    fakes.ledger.posted[alice.user_id] = 20_000
    fakes.generation.auto = False
    started = await service.client.start(alice, "creator-video", inputs_for(fakes, alice.user_id, "x"))
    await fakes.generation.complete(fakes.generation.task_for("prompt-image").id)
    await service.client.wait(alice, started.run.id, lambda r: bool(r.steps[1].task_id))

    canceled = await service.client.cancel(alice, started.run.id)
    assert canceled.status == RUN.RUN_STATUS_CANCELED
    assert [s.status for s in canceled.steps] == [STEP_SUCCEEDED] + [RUN.STEP_STATUS_SKIPPED] * 3
    run = await service.client.wait(alice, started.run.id, settled)
    assert run.refund_amount.milli == 15_000  # proportional: 3 of 4 steps unfinished
    assert fakes.generation.canceled == [fakes.generation.task_for("image").id]  # stopped upstream
    # the image finishing afterwards changes nothing; canceling again is harmless
    await fakes.generation.complete(fakes.generation.task_for("image").id)
    again = await service.client.cancel(alice, started.run.id)
    await asyncio.sleep(0.3)
    assert again.status == RUN.RUN_STATUS_CANCELED
    assert fakes.ledger.balance(alice.user_id) == 15_000
    assert len(fakes.ledger.of_kind(ledger_pb2.TRANSFER_KIND_REFUND)) == 1
    assert (await events_by_subject(db))["runs.completed"] == 1


async def test_a_step_whose_event_was_lost_is_caught_up_by_polling(
    start_service: StartService, fakes: Fakes
) -> None:
    service = await start_service(task_poll_seconds=0.5)
    alice = user()
    fakes.ledger.posted[alice.user_id] = 12_000
    fakes.generation.auto = False
    started = await service.client.start(
        alice, "ecom-video-pro", inputs_for(fakes, alice.user_id, "ecom-video-pro")
    )
    fakes.generation.finish_silently(fakes.generation.task_for("image").id)
    await service.client.wait(alice, started.run.id, lambda r: bool(r.steps[1].task_id))
    fakes.generation.finish_silently(fakes.generation.task_for("video").id)
    run = await service.client.wait(alice, started.run.id, settled)
    assert run.status == RUN.RUN_STATUS_SUCCEEDED
    assert run.steps[1].outputs[0].mime_type == "video/mp4"
