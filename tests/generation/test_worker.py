"""The worker against real upstream fakes: retries honouring the hints, partial results, permanent
failures, deadlines, and a worker process killed with SIGKILL in the middle of a job."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from sqlalchemy import select

from atelier.catalog.v1 import catalog_pb2
from atelier.common.v1 import common_pb2
from atelier.generation.v1 import generation_pb2
from kit.identity import Identity
from services.generation import metrics
from services.generation.models import tasks
from tests.fakes.catalog import FakeModel
from tests.generation.stack import ROOT, Stack, metadata
from tests.generation.upstream import KEY, FakeUpstream, Scripted, rate_limited

IMAGE = common_pb2.MODEL_KIND_IMAGE
VIDEO = common_pb2.MODEL_KIND_VIDEO


def bind(
    stack: Stack,
    upstream: FakeUpstream,
    code: str,
    kind: str,
    adapter: catalog_pb2.AdapterKind.ValueType,
    path: str,
    **extra: object,
) -> None:
    unit = catalog_pb2.BILLING_UNIT_PER_IMAGE if kind == "image" else catalog_pb2.BILLING_UNIT_PER_SECOND
    channel = catalog_pb2.ChannelBinding(
        channel_code=f"ch-{code}",
        adapter=adapter,
        base_url=f"{upstream.url}/{path}",
        api_key_ref="FAKE_KEY",
        upstream_model_id=f"up-{code}",
    )
    stack.catalog.models[code] = FakeModel(code, kind, unit, 1000, channel=channel, **extra)  # type: ignore[arg-type]
    stack.settings.provider_keys = {"FAKE_KEY": KEY}


async def submit(stack: Stack, who: Identity, **fields: object) -> generation_pb2.Task:
    request = generation_pb2.SubmitTaskRequest(**fields)  # type: ignore[arg-type]
    reply: generation_pb2.SubmitTaskResponse = await stack.stub.SubmitTask(request, metadata=metadata(who))
    return reply.task


async def test_rate_limits_are_retried_after_the_hinted_wait(stack: Stack, upstream: FakeUpstream) -> None:
    bind(stack, upstream, "oai", "image", catalog_pb2.ADAPTER_KIND_OPENAI, "openai")
    upstream.script(
        "openai.generate", rate_limited("retry-after-ms"), Scripted(503, {"error": {"message": "overloaded"}})
    )
    await stack.start_worker()
    user = stack.user(10_000)
    task = await submit(stack, user, kind=IMAGE, model_code="oai", prompt="p", ratio="1:1", resolution="1K")
    event = await stack.wait_completed(task.id)
    assert event.status == generation_pb2.TASK_STATUS_SUCCEEDED
    assert upstream.calls["openai.generate"] == 3
    assert upstream.bodies["openai.generate"][0]["model"] == "up-oai"
    assert event.outputs[0].text == "p!"  # the revised prompt travels with the output


async def test_a_persistent_5xx_fails_the_task_after_bounded_retries(
    stack: Stack, upstream: FakeUpstream
) -> None:
    bind(stack, upstream, "oai", "image", catalog_pb2.ADAPTER_KIND_OPENAI, "openai")
    stack.settings.upstream_retries = 2
    upstream.script(
        "openai.generate", *[Scripted(500, {"error": {"message": "boom"}}, {"retry-after-ms": "10"})] * 3
    )
    await stack.start_worker()
    user = stack.user(10_000)
    task = await submit(stack, user, kind=IMAGE, model_code="oai", prompt="p", ratio="1:1", resolution="1K")
    event = await stack.wait_completed(task.id)
    assert event.status == generation_pb2.TASK_STATUS_FAILED
    assert event.error.code == "upstream_unavailable"
    assert upstream.calls["openai.generate"] == 3
    assert stack.ledger.available(user.user_id) == 10_000


async def test_content_filter_fails_at_once_and_releases(stack: Stack, upstream: FakeUpstream) -> None:
    bind(stack, upstream, "oai", "image", catalog_pb2.ADAPTER_KIND_OPENAI, "openai")
    upstream.script(
        "openai.generate",
        Scripted(400, {"error": {"message": "rejected by the safety system", "code": "moderation_blocked"}}),
    )
    await stack.start_worker()
    user = stack.user(10_000)
    task = await submit(stack, user, kind=IMAGE, model_code="oai", prompt="p", ratio="1:1", resolution="1K")
    event = await stack.wait_completed(task.id)
    assert (event.status, event.error.code) == (generation_pb2.TASK_STATUS_FAILED, "content_filtered")
    assert upstream.calls["openai.generate"] == 1
    assert stack.ledger.releases == [task.hold_id]


async def test_partial_images_are_charged_per_delivered_image(stack: Stack, upstream: FakeUpstream) -> None:
    bind(stack, upstream, "seedream", "image", catalog_pb2.ADAPTER_KIND_ARK, "ark")
    upstream.next_outcome = "partial"
    await stack.start_worker()
    user = stack.user(10_000)
    task = await submit(
        stack, user, kind=IMAGE, model_code="seedream", prompt="p", ratio="1:1", resolution="2K", n=3
    )
    assert task.price.milli == 3000
    event = await stack.wait_completed(task.id)
    assert event.status == generation_pb2.TASK_STATUS_SUCCEEDED
    assert len(event.outputs) == 2
    assert event.charge.milli == 2000
    assert stack.ledger.available(user.user_id) == 8_000


async def test_a_slow_operation_past_its_deadline_fails(stack: Stack, upstream: FakeUpstream) -> None:
    bind(stack, upstream, "veo", "video", catalog_pb2.ADAPTER_KIND_GEMINI, "gemini")
    upstream.operation_seconds = 60
    stack.settings.video_deadline_seconds = 1.5
    await stack.start_worker()
    user = stack.user(100_000)
    task = await submit(
        stack,
        user,
        kind=VIDEO,
        model_code="veo",
        prompt="p",
        ratio="16:9",
        resolution="720p",
        duration_seconds=8,
    )
    event = await stack.wait_completed(task.id)
    assert (event.status, event.error.code) == (generation_pb2.TASK_STATUS_FAILED, "deadline_exceeded")
    assert upstream.calls["gemini.video.submit"] == 1
    assert stack.ledger.available(user.user_id) == 100_000


async def test_a_veo_video_is_polled_downloaded_with_the_key_and_stored(
    stack: Stack, upstream: FakeUpstream
) -> None:
    bind(stack, upstream, "veo", "video", catalog_pb2.ADAPTER_KIND_GEMINI, "gemini")
    await stack.start_worker()
    user = stack.user(100_000)
    task = await submit(
        stack,
        user,
        kind=VIDEO,
        model_code="veo",
        prompt="p",
        ratio="16:9",
        resolution="720p",
        duration_seconds=8,
    )
    event = await stack.wait_completed(task.id)
    assert event.status == generation_pb2.TASK_STATUS_SUCCEEDED
    (output,) = event.outputs
    assert (output.mime_type, output.width, output.height) == ("video/mp4", 160, 90)
    assert output.duration_seconds > 1.5
    assert upstream.calls["download"] == 1


def start_worker_process(stack: Stack, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, **stack.env(), "ATELIER_PROVIDER_KEYS": json.dumps({"FAKE_KEY": KEY})}
    return subprocess.Popen(
        [sys.executable, "-m", "services.generation.worker"],
        cwd=ROOT,
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


async def test_a_worker_killed_mid_job_is_redelivered_and_never_submits_twice(
    stack: Stack, upstream: FakeUpstream, tmp_path: Path
) -> None:
    bind(stack, upstream, "seedance", "video", catalog_pb2.ADAPTER_KIND_ARK, "ark")
    upstream.operation_seconds = 3.0
    log = tmp_path / "worker.log"
    first = start_worker_process(stack, log)
    second: subprocess.Popen[bytes] | None = None
    try:
        user = stack.user(100_000)
        task = await submit(
            stack,
            user,
            kind=VIDEO,
            model_code="seedance",
            prompt="p",
            ratio="16:9",
            resolution="720p",
            duration_seconds=5,
        )
        operation_id = None
        for _ in range(300):
            async with stack.db.session() as session:
                operation_id = (
                    await session.execute(select(tasks.c.upstream_operation_id).where(tasks.c.id == task.id))
                ).scalar_one()
            if operation_id and upstream.calls["ark.video.poll"] >= 1:
                break
            await asyncio.sleep(0.05)
        assert operation_id, log.read_text()[-2000:]
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        assert upstream.calls["ark.video.submit"] == 1

        second = start_worker_process(stack, log)
        event = await stack.wait_completed(task.id, seconds=45)
        assert event.status == generation_pb2.TASK_STATUS_SUCCEEDED, log.read_text()[-2000:]
        await asyncio.sleep(1.0)  # a second completion would arrive in this window
        assert upstream.calls["ark.video.submit"] == 1
        assert upstream.calls["download"] == 1
        assert [e.task_id for e in stack.completed].count(task.id) == 1
        assert stack.ledger.captures == [(task.hold_id, 5000)]
        async with stack.db.session() as session:
            row = (await session.execute(select(tasks).where(tasks.c.id == task.id))).one()
        assert row.deliveries == 2
        assert row.upstream_operation_id == operation_id
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.terminate()
                try:
                    # Not longer: nats-py's drain of pull subscriptions waits out its 30 s timeout.
                    process.wait(timeout=3)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=5)


async def wait_for_operation(stack: Stack, task_id: str) -> str:
    for _ in range(200):
        async with stack.db.session() as session:
            operation_id = (
                await session.execute(select(tasks.c.upstream_operation_id).where(tasks.c.id == task_id))
            ).scalar_one()
        if operation_id:
            return str(operation_id)
        await asyncio.sleep(0.05)
    raise AssertionError("the operation id was never stored")


async def test_canceling_a_running_operation_cancels_it_upstream(
    stack: Stack, upstream: FakeUpstream
) -> None:
    bind(stack, upstream, "seedance", "video", catalog_pb2.ADAPTER_KIND_ARK, "ark")
    upstream.operation_seconds = 30
    await stack.start_worker()
    user = stack.user(100_000)
    task = await submit(
        stack,
        user,
        kind=VIDEO,
        model_code="seedance",
        prompt="p",
        ratio="16:9",
        resolution="720p",
        duration_seconds=5,
    )
    await wait_for_operation(stack, task.id)
    canceled = await stack.stub.CancelTask(
        generation_pb2.CancelTaskRequest(task_id=task.id), metadata=metadata(user)
    )
    assert canceled.task.status == generation_pb2.TASK_STATUS_CANCELED
    for _ in range(100):
        if upstream.calls["ark.video.cancel"]:
            break
        await asyncio.sleep(0.05)
    assert upstream.calls["ark.video.cancel"] == 1
    event = await stack.wait_completed(task.id)
    assert event.status == generation_pb2.TASK_STATUS_CANCELED
    assert stack.ledger.releases == [task.hold_id]
    assert stack.ledger.available(user.user_id) == 100_000


async def test_two_workers_racing_on_one_task_complete_it_once(stack: Stack) -> None:
    submitted = metrics.TASKS_SUBMITTED.labels("img", "image")
    succeeded = metrics.TASKS_COMPLETED.labels("img", "image", "succeeded")
    counted = (submitted._value.get(), succeeded._value.get())
    first = await stack.start_worker()
    user = stack.user(10_000)
    # Submitted while the consumers run, so the bus delivers it to one of them too: three runners.
    task = await submit(
        stack, user, kind=IMAGE, model_code="img", prompt="p", ratio="1:1", resolution="1K", n=2
    )
    second = await stack.start_worker()
    await asyncio.gather(first.run(task.id), second.run(task.id))
    await stack.wait_completed(task.id)
    await asyncio.sleep(1.0)
    assert [e.task_id for e in stack.completed].count(task.id) == 1
    got = (
        await stack.stub.GetTask(generation_pb2.GetTaskRequest(task_id=task.id), metadata=metadata(user))
    ).task
    assert got.status == generation_pb2.TASK_STATUS_SUCCEEDED
    assert len(got.outputs) == 2
    assert stack.ledger.captures == [(task.hold_id, 4000)]
    # Counted once, as the task: the losing runners' compare-and-set changed nothing.
    assert (submitted._value.get(), succeeded._value.get()) == (counted[0] + 1, counted[1] + 1)


async def test_a_job_that_can_never_run_fails_its_task_and_releases(stack: Stack) -> None:
    import io

    from PIL import Image

    user = stack.user(10_000)
    png = io.BytesIO()
    Image.new("RGB", (8, 8)).save(png, format="PNG")
    upload = (
        await stack.stub.CreateUpload(
            generation_pb2.CreateUploadRequest(content=png.getvalue(), content_type="image/png"),
            metadata=metadata(user),
        )
    ).upload
    task = await submit(
        stack,
        user,
        kind=IMAGE,
        model_code="img",
        prompt="p",
        ratio="1:1",
        resolution="1K",
        capability="image_edit",
        inputs=[generation_pb2.TaskInput(upload_id=upload.id, role=generation_pb2.INPUT_ROLE_EDIT)],
    )
    for key in await stack.stored_keys():
        if Path(key).stem == upload.id:
            await stack.blobs.store.delete(key)  # the input vanished between submission and the job
    await stack.start_worker()
    event = await stack.wait_completed(task.id)
    assert (event.status, event.error.code) == (generation_pb2.TASK_STATUS_FAILED, "internal_error")
    assert stack.ledger.releases == [task.hold_id]
