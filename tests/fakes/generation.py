"""The one in-test fake of the GenerationService: internal tasks submitted by workflow steps (idempotent
per user and key, completing by themselves with real `tasks.completed` events), GetTask/CancelTask on them
or on tasks a test lays out, and GetUpload for uploads a test registers."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter

import grpc

from atelier.common.v1 import common_pb2
from atelier.events.v1 import events_pb2
from atelier.generation.v1 import generation_pb2, generation_pb2_grpc
from kit.bus import Bus
from kit.errors import FailedPrecondition, InvalidArgument, NotFound
from kit.identity import caller
from tests.fakes.gate import Gate


class FakeGeneration(generation_pb2_grpc.GenerationServiceServicer):
    """Tasks keyed by (user, idempotency key). With `auto` set, each new task completes by itself
    (a `tasks.completed` event on real NATS), failing when its step key is in `fail_steps`. A test may
    also lay tasks out in `tasks` directly; an admin reads any of them, a user only their own."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.callers: list[str] = []  # the role of every GetTask caller
        self.uploads: dict[str, str] = {}
        self.tasks: dict[str, generation_pb2.Task] = {}
        self.by_key: dict[tuple[str, str], str] = {}
        self.requests: list[generation_pb2.SubmitTaskRequest] = []
        self.canceled: list[str] = []
        self.auto = True
        self.fail_steps: set[str] = set()
        self.submit_gate = Gate()
        self.gate_step = ""  # the step whose submission the gate holds (empty: every step)
        self.refuse: dict[str, str] = {}  # step key -> error code answered by SubmitTask
        self._background: set[asyncio.Task[events_pb2.TaskCompleted]] = set()

    def add_upload(self, user_id: str) -> str:
        upload_id = f"up_{uuid.uuid4().hex[:10]}"
        self.uploads[upload_id] = user_id
        return upload_id

    def created(self) -> Counter[str]:
        """Tasks created per step idempotency key (never more than one each)."""
        return Counter(key for (_, key) in self.by_key)

    def task_for(self, step_key: str) -> generation_pb2.Task:
        matches = [t for t in self.tasks.values() if t.workflow_step.step_key == step_key]
        assert len(matches) == 1, f"{len(matches)} tasks for step {step_key}"
        return matches[0]

    async def GetUpload(
        self, request: generation_pb2.GetUploadRequest, context: grpc.aio.ServicerContext
    ) -> generation_pb2.GetUploadResponse:
        user_id = caller(context).user_id
        if self.uploads.get(request.upload_id) != user_id:
            raise NotFound("no such upload", code="upload_not_found")
        return generation_pb2.GetUploadResponse(
            upload=generation_pb2.Upload(id=request.upload_id, user_id=user_id, mime_type="image/png")
        )

    async def GetTask(
        self, request: generation_pb2.GetTaskRequest, context: grpc.aio.ServicerContext
    ) -> generation_pb2.GetTaskResponse:
        role = caller(context).role
        self.callers.append(role)
        task = self.tasks.get(request.task_id)
        if task is None or (role != "admin" and task.user_id != caller(context).user_id):
            raise NotFound("no such task", code="task_not_found")
        return generation_pb2.GetTaskResponse(task=task)

    async def CancelTask(
        self, request: generation_pb2.CancelTaskRequest, context: grpc.aio.ServicerContext
    ) -> generation_pb2.CancelTaskResponse:
        task = self.tasks.get(request.task_id)
        if task is None or task.user_id != caller(context).user_id:
            raise NotFound("no such task", code="task_not_found")
        self.canceled.append(task.id)
        if task.status in (generation_pb2.TASK_STATUS_QUEUED, generation_pb2.TASK_STATUS_RUNNING):
            task.status = generation_pb2.TASK_STATUS_CANCELED
        return generation_pb2.CancelTaskResponse(task=task)

    def finish_silently(self, task_id: str) -> None:
        """The task succeeds but its tasks.completed event is lost (e.g. dead-lettered)."""
        task = self.tasks[task_id]
        task.status = generation_pb2.TASK_STATUS_SUCCEEDED
        task.outputs.extend(self.outputs_for(task))

    async def SubmitTask(
        self, request: generation_pb2.SubmitTaskRequest, context: grpc.aio.ServicerContext
    ) -> generation_pb2.SubmitTaskResponse:
        identity = caller(context)
        self.requests.append(request)
        if not request.internal or not request.workflow_step.run_id:
            raise InvalidArgument("workflow steps are internal tasks")
        code = self.refuse.get(request.workflow_step.step_key)
        if code:
            raise FailedPrecondition("refused", code=code)
        existing = self.by_key.get((identity.user_id, request.idempotency_key))
        if existing is not None:
            return generation_pb2.SubmitTaskResponse(task=self.tasks[existing], created=False)
        task = generation_pb2.Task(
            id=f"task_{uuid.uuid4().hex[:12]}",
            user_id=identity.user_id,
            kind=request.kind,
            model_code=request.model_code,
            status=generation_pb2.TASK_STATUS_QUEUED,
            prompt=request.prompt,
            ratio=request.ratio,
            inputs=request.inputs,
            internal=True,
            workflow_step=request.workflow_step,
        )
        self.tasks[task.id] = task
        self.by_key[(identity.user_id, request.idempotency_key)] = task.id
        if not self.gate_step or self.gate_step == request.workflow_step.step_key:
            await self.submit_gate.maybe_block()
        if self.auto:
            step_key = request.workflow_step.step_key
            job = asyncio.create_task(
                self.complete(task.id, succeeded=step_key not in self.fail_steps, delay=0.05)
            )
            self._background.add(job)
            job.add_done_callback(self._background.discard)
        return generation_pb2.SubmitTaskResponse(task=task, created=True)

    def outputs_for(self, task: generation_pb2.Task) -> list[generation_pb2.TaskOutput]:
        output_id = f"out_{task.id}"
        if task.kind == common_pb2.MODEL_KIND_TEXT:
            return [
                generation_pb2.TaskOutput(id=output_id, mime_type="text/plain", text=f"prompt from {task.id}")
            ]
        if task.kind == common_pb2.MODEL_KIND_IMAGE:
            return [
                generation_pb2.TaskOutput(
                    id=output_id,
                    mime_type="image/png",
                    url=f"https://files.test/{output_id}.png",
                    width=1280,
                    height=720,
                )
            ]
        return [
            generation_pb2.TaskOutput(
                id=output_id,
                mime_type="video/mp4",
                url=f"https://files.test/{output_id}.mp4",
                duration_seconds=5.0,
            )
        ]

    def completion(self, task_id: str, *, succeeded: bool) -> events_pb2.TaskCompleted:
        task = self.tasks[task_id]
        event = events_pb2.TaskCompleted(
            meta=events_pb2.EventMeta(event_id=str(uuid.uuid4()), producer="generation"),
            task_id=task.id,
            user_id=task.user_id,
            kind=task.kind,
            model_code=task.model_code,
            status=generation_pb2.TASK_STATUS_SUCCEEDED if succeeded else generation_pb2.TASK_STATUS_FAILED,
            internal=True,
            run_id=task.workflow_step.run_id,
            step_key=task.workflow_step.step_key,
            attempt=1,
        )
        if succeeded:
            event.outputs.extend(self.outputs_for(task))
        else:
            event.error.CopyFrom(common_pb2.ErrorDetail(code="provider_error", message="the provider failed"))
        return event

    async def publish(self, event: events_pb2.TaskCompleted) -> None:
        await self.bus.publish("tasks.completed", event.SerializeToString(), msg_id=event.meta.event_id)

    async def complete(
        self, task_id: str, *, succeeded: bool = True, delay: float = 0.0
    ) -> events_pb2.TaskCompleted:
        if delay:
            await asyncio.sleep(delay)
        event = self.completion(task_id, succeeded=succeeded)
        await self.publish(event)
        return event
