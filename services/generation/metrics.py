"""Generation's domain metrics: tasks submitted and finished, by model, kind and final status."""

from __future__ import annotations

from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncSession

from kit.db import after_commit
from kit.telemetry import current_trace_id

TASKS_SUBMITTED = Counter(
    "atelier_tasks_submitted", "Tasks accepted (quoted, held and queued)", ["model", "kind"]
)
TASKS_COMPLETED = Counter(
    "atelier_tasks_completed",
    "Tasks that reached a final status (succeeded, failed, canceled)",
    ["model", "kind", "status"],
)


def task_submitted(model: str, kind: str) -> None:
    TASKS_SUBMITTED.labels(model, kind).inc(exemplar=_exemplar())


def task_finished(session: AsyncSession, model: str, kind: str, status: str) -> None:
    """Counts a task's final status once the transaction that set it commits."""
    exemplar = _exemplar()
    after_commit(session, lambda: TASKS_COMPLETED.labels(model, kind, status).inc(exemplar=exemplar))


def _exemplar() -> dict[str, str] | None:
    trace_id = current_trace_id()
    return {"trace_id": trace_id} if trace_id else None
