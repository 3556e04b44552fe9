"""What the generation service publishes (through its outbox): `jobs.<kind>` for its workers,
`tasks.progress` for live views, `tasks.completed` for the ledger, the workflow service and live views."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from atelier.common.v1 import common_pb2
from atelier.events.v1 import events_pb2
from kit.outbox import Outbox
from kit.protoconv import timestamp
from services.generation import views
from services.generation.blobs import Blobs
from services.generation.records import MessageRecord, OutputRecord, TaskRecord
from services.generation.values import TaskKind, TaskStatus

PRODUCER = "generation"
JOB_SUBJECTS = {TaskKind.TEXT: "jobs.text", TaskKind.IMAGE: "jobs.image", TaskKind.VIDEO: "jobs.video"}
PROGRESS = "tasks.progress"
COMPLETED = "tasks.completed"
_NAMESPACE = uuid.UUID("6d1c3f5e-2b7a-4b8e-9a51-0c7e4f1d2a90")


def _meta(event_id: uuid.UUID) -> events_pb2.EventMeta:
    meta = events_pb2.EventMeta(event_id=str(event_id), producer=PRODUCER)
    meta.occurred_at.GetCurrentTime()
    return meta


def derived_id(*parts: object) -> uuid.UUID:
    """Event ids derived from what they announce, so that a repeated write de-duplicates."""
    return uuid.uuid5(_NAMESPACE, ":".join(str(p) for p in parts))


async def job_requested(session: AsyncSession, outbox: Outbox, task: TaskRecord) -> None:
    event_id = derived_id(task.id, task.attempt, "job")
    event = events_pb2.JobRequested(
        meta=_meta(event_id),
        task_id=task.id,
        attempt=task.attempt,
        kind=views.KINDS[task.kind],
        model_code=task.model_code,
        deadline=timestamp(task.deadline_at),
    )
    await outbox.add(session, JOB_SUBJECTS[task.kind], event, event_id=event_id)


async def task_progress(session: AsyncSession, outbox: Outbox, task: TaskRecord) -> None:
    event_id = derived_id(task.id, task.attempt, "progress", task.status, task.progress)
    event = events_pb2.TaskProgress(
        meta=_meta(event_id),
        task_id=task.id,
        user_id=task.user_id,
        status=views.STATUSES[task.status],
        progress=task.progress,
        internal=task.internal,
        run_id=task.run_id or "",
    )
    await outbox.add(session, PROGRESS, event, event_id=event_id)


def _completed(
    event_id: uuid.UUID, settled: TaskRecord | MessageRecord, status: TaskStatus
) -> events_pb2.TaskCompleted:
    """What the ledger settles a hold by, alike for a task and a Copy Studio answer: a charge only on
    success."""
    event = events_pb2.TaskCompleted(
        meta=_meta(event_id),
        task_id=settled.id,
        user_id=settled.user_id,
        model_code=settled.model_code,
        status=views.STATUSES[status],
        price=views.credits(settled.price_milli),
        charge=views.credits(settled.charge_milli if status == TaskStatus.SUCCEEDED else 0),
        hold_id=settled.hold_id or "",
    )
    if (error := views.error_detail(settled.error_code, settled.error_message)) is not None:
        event.error.CopyFrom(error)
    return event


async def task_completed(
    session: AsyncSession, outbox: Outbox, task: TaskRecord, outputs: Sequence[OutputRecord], blobs: Blobs
) -> None:
    event_id = derived_id(task.id, task.attempt, "completed")
    event = _completed(event_id, task, task.status)
    event.kind = views.KINDS[task.kind]
    event.internal = task.internal
    event.run_id = task.run_id or ""
    event.step_key = task.step_key or ""
    event.outputs.extend(views.output(o, blobs) for o in outputs)
    event.attempt = task.attempt
    await outbox.add(session, COMPLETED, event, event_id=event_id)


async def message_completed(
    session: AsyncSession,
    outbox: Outbox,
    *,
    message: MessageRecord,
    status: TaskStatus,
) -> None:
    """A Copy Studio answer settles its hold like a task: the charge is the token usage priced."""
    event_id = derived_id(message.id, "completed")
    event = _completed(event_id, message, status)
    event.kind = common_pb2.MODEL_KIND_TEXT
    event.attempt = 1
    await outbox.add(session, COMPLETED, event, event_id=event_id)
