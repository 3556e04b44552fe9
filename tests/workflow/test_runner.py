"""Runs end to end against the fakes, real PostgreSQL and real NATS: each template, failures and
refunds, duplicate and out-of-order completions, cancel, idempotent starts, bad input, isolation."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter

import grpc
import pytest
from sqlalchemy import func, select

from atelier.catalog.v1 import catalog_pb2
from atelier.events.v1 import events_pb2
from atelier.generation.v1 import generation_pb2
from atelier.ledger.v1 import ledger_pb2
from atelier.workflow.v1 import workflow_pb2
from kit.db import Database
from services.workflow.models import outbox, run_steps, runs
from tests.workflow.conftest import StartService, settled, user
from tests.workflow.fakes import Fakes

RUN = workflow_pb2
STEP_SUCCEEDED = workflow_pb2.STEP_STATUS_SUCCEEDED


def inputs_for(fakes: Fakes, who_id: str, template: str) -> dict[str, object]:
    if template == "ecom-video-pro":
        return {"productText": "A stainless steel water bottle that keeps drinks cold.", "ratio": "9:16"}
    return {
        "productText": "Vitamin D3 gummies for the whole family.",
        "productPhotos": [fakes.generation.add_upload(who_id)],
        "ratio": "16:9",
        "tone": "friendly",
    }


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
    fakes.ledger.balances[alice.user_id] = 50_000

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
        assert tasks["prompt-image"].inputs[0].upload_id == run.inputs["productPhotos"][0]
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
    fakes.ledger.balances[alice.user_id] = 5_000
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
    fakes.ledger.balances[alice.user_id] = 20_000
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
    fakes.ledger.balances[alice.user_id] = 12_000
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
    fakes.ledger.balances[alice.user_id] = 12_000
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
    fakes.ledger.balances[alice.user_id] = 12_000
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
    fakes.ledger.balances[alice.user_id] = 20_000
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


async def test_start_is_idempotent_per_user_and_key(start_service: StartService, fakes: Fakes) -> None:
    service = await start_service()
    alice, bob = user(), user()
    for who in (alice, bob):
        fakes.ledger.balances[who.user_id] = 12_000
    fakes.generation.auto = False
    inputs = inputs_for(fakes, alice.user_id, "ecom-video-pro")

    results = await asyncio.gather(
        *(service.client.start(alice, "ecom-video-pro", inputs, key="same-key") for _ in range(4))
    )
    assert len({r.run.id for r in results}) == 1
    assert sum(r.created for r in results) == 1
    assert fakes.ledger.balance(alice.user_id) == 0
    # the same key of another user is another run
    other = await service.client.start(bob, "ecom-video-pro", inputs, key="same-key")
    assert other.created
    assert other.run.id != results[0].run.id
    # the same key with another body is refused
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await service.client.start(alice, "ecom-video-pro", {**inputs, "ratio": "1:1"}, key="same-key")
    assert refused.value.code() == grpc.StatusCode.ABORTED
    assert dict(refused.value.trailing_metadata())["atelier-code"] == "idempotency_conflict"


async def count_rows(db: Database) -> tuple[int, int, int]:
    async with db.session() as session:
        return (
            (await session.execute(select(func.count()).select_from(runs))).scalar_one(),
            (await session.execute(select(func.count()).select_from(run_steps))).scalar_one(),
            (await session.execute(select(func.count()).select_from(outbox))).scalar_one(),
        )


BAD_STARTS: list[tuple[str, dict[str, object], str]] = [
    ("health-supplement", {"productText": ""}, "invalid_input"),
    ("health-supplement", {"productText": "x" * 501}, "invalid_input"),
    ("health-supplement", {"productText": 42}, "invalid_input"),
    ("health-supplement", {"productPhotos": []}, "invalid_input"),
    ("health-supplement", {"productPhotos": ["up_missing"]}, "invalid_input"),
    ("health-supplement", {"productPhotos": "BOB"}, "invalid_input"),
    ("health-supplement", {"ratio": "4:3"}, "invalid_input"),
    ("health-supplement", {"tone": "sarcastic"}, "invalid_input"),
    ("health-supplement", {"tone": None}, "invalid_input"),
    ("ecom-video-pro", {"surprise": "field"}, "invalid_input"),
    ("no-such-template", {}, "template_not_found"),
    ("disabled", {}, "template_disabled"),
]


async def test_bad_starts_change_nothing(start_service: StartService, fakes: Fakes, db: Database) -> None:
    service = await start_service()
    alice, bob = user(), user()
    fakes.ledger.balances[alice.user_id] = 50_000
    disabled = catalog_pb2.WorkflowTemplate()
    disabled.CopyFrom(fakes.catalog.templates["ecom-video-pro"])
    disabled.code, disabled.enabled = "disabled", False
    fakes.catalog.templates["disabled"] = disabled
    for template, change, code in BAD_STARTS:
        inputs = inputs_for(
            fakes, alice.user_id, "ecom-video-pro" if template != "health-supplement" else template
        )
        if change.get("productPhotos") == "BOB":
            change = {"productPhotos": [fakes.generation.add_upload(bob.user_id)]}  # another user's upload
        inputs.update(change)
        if "tone" in inputs and inputs["tone"] is None:
            del inputs["tone"]

        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await service.client.start(alice, template, inputs)

        assert dict(refused.value.trailing_metadata())["atelier-code"] == code, (template, change)
        assert fakes.ledger.balance(alice.user_id) == 50_000
        assert fakes.ledger.calls["Debit"] == 0
        assert not fakes.generation.tasks
        assert await count_rows(db) == (0, 0, 0)


async def test_insufficient_balance_is_refused_and_leaves_nothing(
    start_service: StartService, fakes: Fakes, db: Database
) -> None:
    service = await start_service()
    alice = user()
    fakes.ledger.balances[alice.user_id] = 11_999
    inputs = inputs_for(fakes, alice.user_id, "ecom-video-pro")
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await service.client.start(alice, "ecom-video-pro", inputs, key="k1")
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert dict(refused.value.trailing_metadata())["atelier-code"] == "insufficient_balance"
    assert fakes.ledger.balance(alice.user_id) == 11_999
    assert await count_rows(db) == (0, 0, 0)
    assert not fakes.generation.tasks
    # after a recharge the same key starts afresh
    fakes.ledger.balances[alice.user_id] = 12_000
    retried = await service.client.start(alice, "ecom-video-pro", inputs, key="k1")
    assert retried.created
    assert fakes.ledger.balance(alice.user_id) == 0


async def test_unverified_callers_cannot_start(start_service: StartService, fakes: Fakes) -> None:
    service = await start_service()
    stranger = user()
    unverified = type(stranger)(user_id=stranger.user_id, status="unverified")
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await service.client.start(
            unverified, "ecom-video-pro", inputs_for(fakes, stranger.user_id, "ecom-video-pro")
        )
    assert dict(refused.value.trailing_metadata())["atelier-code"] == "email_not_verified"


async def test_another_users_run_is_invisible(start_service: StartService, fakes: Fakes) -> None:
    service = await start_service()
    alice, mallory = user(), user()
    fakes.ledger.balances[alice.user_id] = 12_000
    fakes.generation.auto = False
    started = await service.client.start(
        alice, "ecom-video-pro", inputs_for(fakes, alice.user_id, "ecom-video-pro")
    )
    run_id = started.run.id

    for call in (service.client.get(mallory, run_id), service.client.cancel(mallory, run_id)):
        with pytest.raises(grpc.aio.AioRpcError) as hidden:
            await call
        assert hidden.value.code() == grpc.StatusCode.NOT_FOUND
    listed = await service.client.stub.ListRuns(workflow_pb2.ListRunsRequest(), metadata=mallory.metadata())
    assert not listed.runs
    run = await service.client.get(alice, run_id)
    assert run.status == RUN.RUN_STATUS_RUNNING
    assert not run.cancel_requested
    # another user's event for the run is ignored too
    forged = fakes.generation.completion(fakes.generation.task_for("image").id, succeeded=True)
    forged.user_id = mallory.user_id
    await fakes.generation.publish(forged)
    await asyncio.sleep(0.4)
    assert (await service.client.get(alice, run_id)).steps[0].status == RUN.STEP_STATUS_RUNNING


async def test_list_is_newest_first_with_a_cursor(start_service: StartService, fakes: Fakes) -> None:
    service = await start_service()
    alice = user()
    fakes.ledger.balances[alice.user_id] = 100_000
    fakes.generation.auto = False
    ids = []
    for _ in range(5):
        started = await service.client.start(
            alice, "ecom-video-pro", inputs_for(fakes, alice.user_id, "ecom-video-pro"), key=uuid.uuid4().hex
        )
        ids.append(started.run.id)
    seen: list[str] = []
    cursor = ""
    while True:
        page = await service.client.stub.ListRuns(
            workflow_pb2.ListRunsRequest(page={"cursor": cursor, "limit": 2}), metadata=alice.metadata()
        )
        seen += [r.id for r in page.runs]
        cursor = page.page.next_cursor
        if not cursor:
            break
    assert seen == list(reversed(ids))
    filtered = await service.client.stub.ListRuns(
        workflow_pb2.ListRunsRequest(status=RUN.RUN_STATUS_SUCCEEDED), metadata=alice.metadata()
    )
    assert not filtered.runs
    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await service.client.stub.ListRuns(
            workflow_pb2.ListRunsRequest(page={"cursor": "not-a-cursor"}), metadata=alice.metadata()
        )
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_a_step_whose_event_was_lost_is_caught_up_by_polling(
    start_service: StartService, fakes: Fakes
) -> None:
    service = await start_service(task_poll_seconds=0.5)
    alice = user()
    fakes.ledger.balances[alice.user_id] = 12_000
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
