"""Submit → worker → completion through the real servicer, with the local provider."""

from __future__ import annotations

import asyncio
import io
import tempfile
from pathlib import Path

import grpc
import imageio_ffmpeg
import pytest
from PIL import Image
from sqlalchemy import func, select

from atelier.common.v1 import common_pb2
from atelier.generation.v1 import generation_pb2
from kit.errors import CODE_KEY
from services.generation.models import outbox, tasks
from tests.generation.stack import Stack, metadata

IMAGE = common_pb2.MODEL_KIND_IMAGE
VIDEO = common_pb2.MODEL_KIND_VIDEO


def code_of(error: grpc.aio.AioRpcError) -> str:
    code: str = dict(error.trailing_metadata() or ()).get(CODE_KEY, "")
    return code


async def task_count(stack: Stack) -> tuple[int, int]:
    async with stack.db.session() as session:
        count = (await session.execute(select(func.count()).select_from(tasks))).scalar_one()
        events = (await session.execute(select(func.count()).select_from(outbox))).scalar_one()
    return count, events


async def test_an_image_task_makes_real_pngs_and_charges_per_image(stack: Stack) -> None:
    await stack.start_worker()
    alice = stack.user(10_000)
    submitted = await stack.stub.SubmitTask(
        generation_pb2.SubmitTaskRequest(
            idempotency_key="k1",
            kind=IMAGE,
            model_code="img",
            prompt="a red bicycle",
            ratio="16:9",
            resolution="1K",
            n=2,
        ),
        metadata=metadata(alice),
    )
    task = submitted.task
    assert submitted.created
    assert task.status == generation_pb2.TASK_STATUS_QUEUED
    assert task.price.milli == 4000
    assert task.hold_id == f"hold:{task.id}:1"
    assert stack.ledger.available(alice.user_id) == 6000

    event = await stack.wait_completed(task.id)
    assert event.status == generation_pb2.TASK_STATUS_SUCCEEDED
    assert event.charge.milli == 4000
    assert event.hold_id == task.hold_id
    assert stack.ledger.posted[alice.user_id] == 6000

    done = (
        await stack.stub.GetTask(generation_pb2.GetTaskRequest(task_id=task.id), metadata=metadata(alice))
    ).task
    assert done.status == generation_pb2.TASK_STATUS_SUCCEEDED
    assert done.progress == 100
    assert len(done.outputs) == 2
    for output in done.outputs:
        assert (output.width, output.height) == (1024, 576)
        assert output.url.startswith(stack.settings.blob_url_base)
        key = f"outputs/{alice.user_id}/{task.id}/{output.index}.png"
        data = await stack.blobs.store.get(key)
        assert len(data) == output.size_bytes
        with Image.open(io.BytesIO(data)) as image:
            assert image.format == "PNG"
            assert image.size == (1024, 576)
    # A replay of the key answers with the same task and holds nothing more.
    again = await stack.stub.SubmitTask(
        generation_pb2.SubmitTaskRequest(
            idempotency_key="k1",
            kind=IMAGE,
            model_code="img",
            prompt="a red bicycle",
            ratio="16:9",
            resolution="1K",
            n=2,
        ),
        metadata=metadata(alice),
    )
    assert not again.created
    assert again.task.id == task.id
    assert len(stack.ledger.holds) == 1


async def test_a_video_task_makes_an_mp4_of_the_asked_duration_and_ratio(stack: Stack) -> None:
    await stack.start_worker()
    bob = stack.user(20_000)
    task = (
        await stack.stub.SubmitTask(
            generation_pb2.SubmitTaskRequest(
                kind=VIDEO,
                model_code="vid",
                prompt="waves at dusk",
                ratio="9:16",
                resolution="720p",
                duration_seconds=5,
            ),
            metadata=metadata(bob),
        )
    ).task
    assert task.price.milli == 5000
    event = await stack.wait_completed(task.id, seconds=40)
    assert event.status == generation_pb2.TASK_STATUS_SUCCEEDED
    (output,) = event.outputs
    assert output.mime_type == "video/mp4"
    assert (output.width, output.height) == (720, 1280)
    assert output.duration_seconds == pytest.approx(5.0, abs=0.3)
    data = await stack.blobs.store.get(f"outputs/{bob.user_id}/{task.id}/0.mp4")
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "v.mp4"
        path.write_bytes(data)
        _, seconds = imageio_ffmpeg.count_frames_and_secs(str(path))
    assert seconds == pytest.approx(5.0, abs=0.3)
    assert stack.ledger.posted[bob.user_id] == 15_000


async def test_insufficient_balance_creates_nothing_and_holds_nothing(stack: Stack) -> None:
    carol = stack.user(1_000)
    before = await task_count(stack)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stack.stub.SubmitTask(
            generation_pb2.SubmitTaskRequest(
                idempotency_key="poor", kind=IMAGE, model_code="img", prompt="x", ratio="1:1", resolution="1K"
            ),
            metadata=metadata(carol),
        )
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert code_of(caught.value) == "insufficient_balance"
    assert await task_count(stack) == before
    assert stack.ledger.available(carol.user_id) == 1_000
    assert not [h for h in stack.ledger.holds.values() if h.user_id == carol.user_id]
    # After a recharge the same key goes through: the refused attempt left nothing behind.
    stack.ledger.posted[carol.user_id] = 5_000
    ok = await stack.stub.SubmitTask(
        generation_pb2.SubmitTaskRequest(
            idempotency_key="poor", kind=IMAGE, model_code="img", prompt="x", ratio="1:1", resolution="1K"
        ),
        metadata=metadata(carol),
    )
    assert ok.created


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"model_code": "gone"}, "model_not_found"),
        ({"ratio": "21:9"}, "unsupported_spec"),
        ({"capability": "image_edit"}, "missing_input"),
        ({"prompt": " "}, "invalid_argument"),
        ({"n": 11}, "unsupported_spec"),
    ],
)
async def test_refused_submissions_change_nothing(stack: Stack, change: dict[str, object], code: str) -> None:
    dave = stack.user(100_000)
    fields: dict[str, object] = {
        "kind": IMAGE,
        "model_code": "img",
        "prompt": "p",
        "ratio": "1:1",
        "resolution": "1K",
    }
    fields.update(change)
    before = await task_count(stack)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stack.stub.SubmitTask(generation_pb2.SubmitTaskRequest(**fields), metadata=metadata(dave))  # type: ignore[arg-type]
    assert code_of(caught.value) == code
    assert await task_count(stack) == before
    assert stack.ledger.available(dave.user_id) == 100_000


async def test_disabled_model_and_unverified_user_are_refused(stack: Stack) -> None:
    stack.catalog.models["img"].enabled = False
    erin = stack.user(100_000)
    request = generation_pb2.SubmitTaskRequest(kind=IMAGE, model_code="img", prompt="p", ratio="1:1")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stack.stub.SubmitTask(request, metadata=metadata(erin))
    assert code_of(caught.value) == "model_disabled"
    stack.catalog.models["img"].enabled = True
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stack.stub.SubmitTask(request, metadata=metadata(stack.user(100_000, verified=False)))
    assert code_of(caught.value) == "email_not_verified"
    assert await task_count(stack) == (0, 0)


async def test_a_failed_task_releases_its_hold(stack: Stack) -> None:
    stack.settings.local_failure_fraction = 1.0
    await stack.start_worker()
    frank = stack.user(10_000)
    task = (
        await stack.stub.SubmitTask(
            generation_pb2.SubmitTaskRequest(
                kind=IMAGE, model_code="img", prompt="p", ratio="1:1", resolution="1K"
            ),
            metadata=metadata(frank),
        )
    ).task
    event = await stack.wait_completed(task.id)
    assert event.status == generation_pb2.TASK_STATUS_FAILED
    assert event.error.code == "generation_failed"
    assert event.charge.milli == 0
    assert stack.ledger.releases == [task.hold_id]
    assert stack.ledger.available(frank.user_id) == 10_000
    got = (
        await stack.stub.GetTask(generation_pb2.GetTaskRequest(task_id=task.id), metadata=metadata(frank))
    ).task
    assert got.status == generation_pb2.TASK_STATUS_FAILED
    assert got.error.message


async def test_a_queued_task_cancels_at_once_and_is_released(stack: Stack) -> None:
    gina = stack.user(10_000)
    task = (
        await stack.stub.SubmitTask(
            generation_pb2.SubmitTaskRequest(
                kind=IMAGE, model_code="img", prompt="p", ratio="1:1", resolution="1K"
            ),
            metadata=metadata(gina),
        )
    ).task
    canceled = (
        await stack.stub.CancelTask(
            generation_pb2.CancelTaskRequest(task_id=task.id), metadata=metadata(gina)
        )
    ).task
    assert canceled.status == generation_pb2.TASK_STATUS_CANCELED
    event = await stack.wait_completed(task.id)
    assert event.status == generation_pb2.TASK_STATUS_CANCELED
    assert stack.ledger.releases == [task.hold_id]
    # Canceling again is a no-op; the worker that picks the job up later does nothing.
    await stack.stub.CancelTask(generation_pb2.CancelTaskRequest(task_id=task.id), metadata=metadata(gina))
    await stack.start_worker()
    await stack.worker.run(task.id)  # type: ignore[union-attr]
    got = (
        await stack.stub.GetTask(generation_pb2.GetTaskRequest(task_id=task.id), metadata=metadata(gina))
    ).task
    assert got.status == generation_pb2.TASK_STATUS_CANCELED
    assert not got.outputs


async def test_a_running_task_canceled_mid_job_is_discarded_and_not_charged(stack: Stack) -> None:
    worker = await stack.start_worker()
    worker.providers.local.delay = 1.5
    hana = stack.user(10_000)
    task = (
        await stack.stub.SubmitTask(
            generation_pb2.SubmitTaskRequest(
                kind=IMAGE, model_code="img", prompt="p", ratio="1:1", resolution="1K"
            ),
            metadata=metadata(hana),
        )
    ).task
    for _ in range(100):
        got = (
            await stack.stub.GetTask(generation_pb2.GetTaskRequest(task_id=task.id), metadata=metadata(hana))
        ).task
        if got.status == generation_pb2.TASK_STATUS_RUNNING:
            break
        await asyncio.sleep(0.05)
    assert got.status == generation_pb2.TASK_STATUS_RUNNING
    await stack.stub.CancelTask(generation_pb2.CancelTaskRequest(task_id=task.id), metadata=metadata(hana))
    event = await stack.wait_completed(task.id)
    assert event.status == generation_pb2.TASK_STATUS_CANCELED
    await asyncio.sleep(2.0)  # the provider answers meanwhile; its result must be discarded
    got = (
        await stack.stub.GetTask(generation_pb2.GetTaskRequest(task_id=task.id), metadata=metadata(hana))
    ).task
    assert got.status == generation_pb2.TASK_STATUS_CANCELED
    assert not got.outputs
    assert [e.task_id for e in stack.completed].count(task.id) == 1
    assert stack.ledger.captures == []
    assert stack.ledger.available(hana.user_id) == 10_000


async def test_a_user_cannot_see_or_cancel_another_users_task(stack: Stack) -> None:
    ivan, judy = stack.user(10_000), stack.user(10_000)
    task = (
        await stack.stub.SubmitTask(
            generation_pb2.SubmitTaskRequest(
                kind=IMAGE, model_code="img", prompt="p", ratio="1:1", resolution="1K"
            ),
            metadata=metadata(ivan),
        )
    ).task
    for call in (
        stack.stub.GetTask(generation_pb2.GetTaskRequest(task_id=task.id), metadata=metadata(judy)),
        stack.stub.CancelTask(generation_pb2.CancelTaskRequest(task_id=task.id), metadata=metadata(judy)),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    listed = await stack.stub.ListTasks(generation_pb2.ListTasksRequest(), metadata=metadata(judy))
    assert not listed.tasks
    got = (
        await stack.stub.GetTask(generation_pb2.GetTaskRequest(task_id=task.id), metadata=metadata(ivan))
    ).task
    assert got.status == generation_pb2.TASK_STATUS_QUEUED


async def test_list_is_newest_first_with_cursor_and_filters(stack: Stack) -> None:
    kim = stack.user(1_000_000)
    ids = []
    for i in range(5):
        model, kind = ("vid", VIDEO) if i % 2 else ("img", IMAGE)
        request = generation_pb2.SubmitTaskRequest(
            kind=kind,
            model_code=model,
            prompt=f"p{i}",
            ratio="1:1",
            resolution="1K" if kind == IMAGE else "720p",
            duration_seconds=5 if kind == VIDEO else 0,
        )
        ids.append((await stack.stub.SubmitTask(request, metadata=metadata(kim))).task.id)
    seen: list[str] = []
    cursor = ""
    while True:
        page = await stack.stub.ListTasks(
            generation_pb2.ListTasksRequest(page=common_pb2.PageRequest(cursor=cursor, limit=2)),
            metadata=metadata(kim),
        )
        seen += [t.id for t in page.tasks]
        cursor = page.page.next_cursor
        if not cursor:
            break
    assert seen == list(reversed(ids))
    videos = await stack.stub.ListTasks(generation_pb2.ListTasksRequest(kind=VIDEO), metadata=metadata(kim))
    assert [t.id for t in videos.tasks] == [ids[3], ids[1]]
    by_model = await stack.stub.ListTasks(
        generation_pb2.ListTasksRequest(model_code="img"), metadata=metadata(kim)
    )
    assert len(by_model.tasks) == 3
    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await stack.stub.ListTasks(
            generation_pb2.ListTasksRequest(page=common_pb2.PageRequest(cursor="not-a-cursor")),
            metadata=metadata(kim),
        )
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert code_of(bad.value) == "invalid_cursor"


async def test_uploads_are_decoded_and_usable_as_inputs_by_their_owner_only(stack: Stack) -> None:
    await stack.start_worker()
    lee, mo = stack.user(100_000), stack.user(100_000)
    png = io.BytesIO()
    Image.new("RGB", (64, 48), (10, 20, 30)).save(png, format="PNG")
    upload = (
        await stack.stub.CreateUpload(
            generation_pb2.CreateUploadRequest(
                content=png.getvalue(), filename="a.png", content_type="image/png"
            ),
            metadata=metadata(lee),
        )
    ).upload
    assert (upload.mime_type, upload.width, upload.height) == ("image/png", 64, 48)
    for bad, ctype in (
        (b"not an image at all", "image/png"),
        (png.getvalue()[:40], "image/png"),
        (png.getvalue(), "image/jpeg"),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stack.stub.CreateUpload(
                generation_pb2.CreateUploadRequest(content=bad, filename="x", content_type=ctype),
                metadata=metadata(lee),
            )
        assert code_of(caught.value) == "unsupported_media_type"
    edit = generation_pb2.SubmitTaskRequest(
        kind=IMAGE,
        model_code="img",
        prompt="make it blue",
        ratio="1:1",
        resolution="1K",
        capability="image_edit",
        inputs=[generation_pb2.TaskInput(upload_id=upload.id, role=generation_pb2.INPUT_ROLE_EDIT)],
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stack.stub.SubmitTask(edit, metadata=metadata(mo))
    assert code_of(caught.value) == "missing_input"
    task = (await stack.stub.SubmitTask(edit, metadata=metadata(lee))).task
    event = await stack.wait_completed(task.id)
    assert event.status == generation_pb2.TASK_STATUS_SUCCEEDED


async def test_internal_tasks_come_only_from_the_workflow_service_and_hold_nothing(stack: Stack) -> None:
    await stack.start_worker()
    nia = stack.user(0)
    request = generation_pb2.SubmitTaskRequest(
        kind=IMAGE,
        model_code="img",
        prompt="step",
        ratio="1:1",
        resolution="1K",
        internal=True,
        workflow_step=generation_pb2.WorkflowStepRef(run_id="run_1", step_key="hero"),
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stack.stub.SubmitTask(request, metadata=metadata(nia))
    assert code_of(caught.value) == "internal_only"
    task = (await stack.stub.SubmitTask(request, metadata=metadata(nia, caller="workflow"))).task
    assert task.internal
    assert task.price.milli == 0
    assert not task.hold_id
    event = await stack.wait_completed(task.id)
    assert event.status == generation_pb2.TASK_STATUS_SUCCEEDED
    assert (event.run_id, event.step_key, event.hold_id) == ("run_1", "hero", "")
    assert not stack.ledger.holds


async def test_a_retry_after_a_crash_between_hold_and_record_adopts_the_first_hold(stack: Stack) -> None:
    """kill -9 after the ledger held but before the task committed leaves a hold and no task; the client's
    retry with the same Idempotency-Key names the same task and hold, so nothing stays held for nothing."""
    from services.generation.events import derived_id
    from services.generation.service import hold_id, task_id_for

    alice = stack.user(10_000)
    request = generation_pb2.SubmitTaskRequest(
        idempotency_key="crash-1", kind=IMAGE, model_code="img", prompt="a mug", ratio="1:1", resolution="1K"
    )
    # The dead process's hold: the same id and body this submission makes.
    orphan = hold_id(task_id_for(alice.user_id, "crash-1"), 1)
    first = await stack.stub.SubmitTask(request, metadata=metadata(alice))
    assert first.task.hold_id == orphan
    await stack.stub.SubmitTask(
        generation_pb2.SubmitTaskRequest(
            idempotency_key="crash-2",
            kind=IMAGE,
            model_code="img",
            prompt="a mug",
            ratio="1:1",
            resolution="1K",
        ),
        metadata=metadata(alice),
    )
    held_after_two = stack.ledger.available(alice.user_id)
    # Now the crash itself: a hold exists, its task row does not (the commit never happened).
    async with stack.db.transaction() as session:
        await session.execute(tasks.delete().where(tasks.c.id == first.task.id))
        await session.execute(outbox.delete().where(outbox.c.id == derived_id(first.task.id, 1, "job")))
    retried = await stack.stub.SubmitTask(request, metadata=metadata(alice))
    assert retried.created
    assert retried.task.id == first.task.id
    assert retried.task.hold_id == orphan
    assert stack.ledger.available(alice.user_id) == held_after_two  # held once, not twice
    assert [h for h in stack.ledger.holds if h.startswith("hold:")] == list(stack.ledger.holds)
    assert len(stack.ledger.holds) == 2
    # Another user's same key is another task.
    bob = stack.user(10_000)
    other = await stack.stub.SubmitTask(request, metadata=metadata(bob))
    assert other.task.id != first.task.id


async def test_a_retry_after_a_released_submission_holds_afresh(stack: Stack) -> None:
    """A submission whose record failed released its hold; the key's retry must not adopt that spent hold
    (its task would run uncharged), it holds again under a new id."""
    from services.generation.events import derived_id

    alice = stack.user(10_000)
    request = generation_pb2.SubmitTaskRequest(
        idempotency_key="released-1",
        kind=IMAGE,
        model_code="img",
        prompt="a mug",
        ratio="1:1",
        resolution="1K",
    )
    first = await stack.stub.SubmitTask(request, metadata=metadata(alice))
    # What a failed record does: no task, its hold released.
    async with stack.db.transaction() as session:
        await session.execute(tasks.delete().where(tasks.c.id == first.task.id))
        await session.execute(outbox.delete().where(outbox.c.id == derived_id(first.task.id, 1, "job")))
    stack.ledger.release(first.task.hold_id)
    assert stack.ledger.available(alice.user_id) == 10_000
    retried = await stack.stub.SubmitTask(request, metadata=metadata(alice))
    assert retried.task.id == first.task.id
    assert retried.task.hold_id.startswith(f"{first.task.hold_id}:")
    assert stack.ledger.holds[retried.task.hold_id].status == "pending"
    assert stack.ledger.available(alice.user_id) == 10_000 - retried.task.price.milli
