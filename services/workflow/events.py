"""What the workflow publishes (runs.started, runs.progress, runs.completed, through the outbox) and
consumes (tasks.completed, with a durable JetStream consumer)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from google.protobuf.message import Message
from opentelemetry import propagate
from sqlalchemy.ext.asyncio import AsyncSession

from atelier.common.v1 import common_pb2
from atelier.events.v1 import events_pb2
from atelier.workflow.v1 import workflow_pb2
from kit.outbox import Outbox
from services.workflow import metrics
from services.workflow.models import RunStatus, StepStatus
from services.workflow.repository import RunRecord

PRODUCER = "workflow"
RUNS_STARTED = "runs.started"
RUNS_PROGRESS = "runs.progress"
RUNS_COMPLETED = "runs.completed"
TASKS_COMPLETED = "tasks.completed"
# The durable consumer (and inbox name) of step completions; every replica shares it.
STEPS_CONSUMER = "workflow-steps"

# A run still debiting is pending to everyone outside the service.
RUN_STATUS: dict[RunStatus, workflow_pb2.RunStatus.ValueType] = {
    RunStatus.DEBITING: workflow_pb2.RUN_STATUS_PENDING,
    RunStatus.PENDING: workflow_pb2.RUN_STATUS_PENDING,
    RunStatus.RUNNING: workflow_pb2.RUN_STATUS_RUNNING,
    RunStatus.SUCCEEDED: workflow_pb2.RUN_STATUS_SUCCEEDED,
    RunStatus.FAILED: workflow_pb2.RUN_STATUS_FAILED,
    RunStatus.CANCELED: workflow_pb2.RUN_STATUS_CANCELED,
}
STEP_STATUS: dict[StepStatus, workflow_pb2.StepStatus.ValueType] = {
    StepStatus.PENDING: workflow_pb2.STEP_STATUS_PENDING,
    StepStatus.RUNNING: workflow_pb2.STEP_STATUS_RUNNING,
    StepStatus.SUCCEEDED: workflow_pb2.STEP_STATUS_SUCCEEDED,
    StepStatus.FAILED: workflow_pb2.STEP_STATUS_FAILED,
    StepStatus.SKIPPED: workflow_pb2.STEP_STATUS_SKIPPED,
}


def _meta() -> tuple[uuid.UUID, events_pb2.EventMeta]:
    event_id = uuid.uuid4()
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    meta = events_pb2.EventMeta(
        event_id=str(event_id), trace_parent=carrier.get("traceparent", ""), producer=PRODUCER
    )
    meta.occurred_at.FromDatetime(datetime.now(UTC))
    return event_id, meta


async def _add(
    outbox: Outbox, session: AsyncSession, subject: str, event_id: uuid.UUID, msg: Message
) -> None:
    await outbox.add(session, subject, msg, event_id=event_id)


async def run_started(outbox: Outbox, session: AsyncSession, run: RunRecord, debit_transfer_id: str) -> None:
    event_id, meta = _meta()
    await _add(
        outbox,
        session,
        RUNS_STARTED,
        event_id,
        events_pb2.RunStarted(
            meta=meta,
            run_id=run.id,
            user_id=run.user_id,
            template_code=run.template_code,
            price=common_pb2.Credits(milli=run.price_milli),
            debit_transfer_id=debit_transfer_id,
        ),
    )


async def run_progress(
    outbox: Outbox,
    session: AsyncSession,
    run: RunRecord,
    run_status: RunStatus,
    step_key: str,
    step_status: StepStatus,
) -> None:
    event_id, meta = _meta()
    await _add(
        outbox,
        session,
        RUNS_PROGRESS,
        event_id,
        events_pb2.RunProgress(
            meta=meta,
            run_id=run.id,
            user_id=run.user_id,
            status=RUN_STATUS[run_status],
            step_key=step_key,
            step_status=STEP_STATUS[step_status],
        ),
    )


async def run_completed(
    outbox: Outbox,
    session: AsyncSession,
    run: RunRecord,
    *,
    status: RunStatus,
    refund_milli: int,
    refund_transfer_id: str,
    error_code: str | None,
    error_message: str | None,
) -> None:
    event_id, meta = _meta()
    message = events_pb2.RunCompleted(
        meta=meta,
        run_id=run.id,
        user_id=run.user_id,
        status=RUN_STATUS[status],
        price=common_pb2.Credits(milli=run.price_milli),
        debit_transfer_id=run.debit_transfer_id or "",
        refund=common_pb2.Credits(milli=refund_milli),
        refund_transfer_id=refund_transfer_id,
    )
    if error_code:
        message.error.CopyFrom(common_pb2.ErrorDetail(code=error_code, message=error_message or ""))
    await _add(outbox, session, RUNS_COMPLETED, event_id, message)
    # Counted when the event is written: a rare rolled-back transaction may count once too often.
    metrics.RUNS_COMPLETED.labels(run.template_code, status).inc()
