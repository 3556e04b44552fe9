"""What the workflow publishes (runs.started, runs.progress, runs.completed, through the outbox) and
consumes (tasks.completed, with a durable JetStream consumer)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import TypeAlias

from opentelemetry import propagate
from sqlalchemy.ext.asyncio import AsyncSession

from atelier.common.v1 import common_pb2
from atelier.events.v1 import events_pb2
from atelier.workflow.v1 import workflow_pb2
from kit.outbox import Outbox
from kit.protoconv import enum_by_name
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

# Protobuf values by the names the domain's enums carry; a run still debiting is pending to everyone
# outside the service.
RUN_STATUS = {**enum_by_name(workflow_pb2.RunStatus), RunStatus.DEBITING: workflow_pb2.RUN_STATUS_PENDING}
STEP_STATUS = enum_by_name(workflow_pb2.StepStatus)

RunEvent: TypeAlias = events_pb2.RunStarted | events_pb2.RunProgress | events_pb2.RunCompleted


def _meta(event_id: uuid.UUID) -> events_pb2.EventMeta:
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    meta = events_pb2.EventMeta(
        event_id=str(event_id), trace_parent=carrier.get("traceparent", ""), producer=PRODUCER
    )
    meta.occurred_at.FromDatetime(datetime.now(UTC))
    return meta


async def _publish(
    outbox: Outbox, session: AsyncSession, subject: str, run: RunRecord, event: RunEvent
) -> None:
    """Names the run, stamps a fresh event id and the current trace, and adds the event to the outbox."""
    event_id = uuid.uuid4()
    event.meta.CopyFrom(_meta(event_id))
    event.run_id = run.id
    event.user_id = run.user_id
    await outbox.add(session, subject, event, event_id=event_id)


async def run_started(outbox: Outbox, session: AsyncSession, run: RunRecord, debit_transfer_id: str) -> None:
    event = events_pb2.RunStarted(
        template_code=run.template_code,
        price=common_pb2.Credits(milli=run.price_milli),
        debit_transfer_id=debit_transfer_id,
    )
    await _publish(outbox, session, RUNS_STARTED, run, event)


async def run_progress(
    outbox: Outbox,
    session: AsyncSession,
    run: RunRecord,
    run_status: RunStatus,
    step_key: str,
    step_status: StepStatus,
) -> None:
    event = events_pb2.RunProgress(
        status=RUN_STATUS[run_status], step_key=step_key, step_status=STEP_STATUS[step_status]
    )
    await _publish(outbox, session, RUNS_PROGRESS, run, event)


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
    event = events_pb2.RunCompleted(
        status=RUN_STATUS[status],
        price=common_pb2.Credits(milli=run.price_milli),
        debit_transfer_id=run.debit_transfer_id or "",
        refund=common_pb2.Credits(milli=refund_milli),
        refund_transfer_id=refund_transfer_id,
    )
    if error_code:
        event.error.CopyFrom(common_pb2.ErrorDetail(code=error_code, message=error_message or ""))
    await _publish(outbox, session, RUNS_COMPLETED, run, event)
    # Counted when the event is written: a rare rolled-back transaction may count once too often.
    metrics.RUNS_COMPLETED.labels(run.template_code, status).inc()
