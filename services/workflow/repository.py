"""Every query of the workflow service."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, func, insert, literal, or_, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncSession

from services.workflow.models import (
    FINAL,
    RefundPolicy,
    RefundState,
    RunStatus,
    StepStatus,
    run_steps,
    runs,
)


def _fields(cls: type, row: RowMapping, **converted: Any) -> dict[str, Any]:
    """Each field of the record class `cls`: the `converted` value given for it, else its column as read."""
    return {f.name: converted[f.name] if f.name in converted else row[f.name] for f in fields(cls)}


@dataclass(frozen=True)
class StepStart:
    """What a step is created with, from its template step: written once, by `insert_run`, never changed."""

    key: str
    kind: str
    model_code: str


@dataclass(frozen=True)
class StepRecord(StepStart):
    run_id: str
    index: int
    status: StepStatus
    task_id: str | None
    outputs: list[dict[str, Any]]
    error_code: str | None
    error_message: str | None
    started_at: datetime | None
    finished_at: datetime | None

    @classmethod
    def of(cls, row: RowMapping) -> StepRecord:
        return cls(**_fields(cls, row, status=StepStatus(row["status"]), outputs=list(row["outputs"] or [])))


@dataclass(frozen=True)
class RunStart:
    """What a run is started with: written once, by `insert_run`, and never changed."""

    id: str
    user_id: str
    idempotency_key: str
    request_hash: str
    template_code: str
    template_snapshot: bytes
    catalog_version: int
    inputs: dict[str, Any]
    price_milli: int
    refund_policy: RefundPolicy
    trace_id: str


@dataclass(frozen=True)
class RunRecord(RunStart):
    status: RunStatus
    debit_transfer_id: str | None
    refund_state: RefundState
    refund_milli: int
    refund_transfer_id: str | None
    cancel_requested: bool
    error_code: str | None
    error_message: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime
    steps: list[StepRecord] = field(default_factory=list)

    @classmethod
    def of(cls, row: RowMapping, steps: list[StepRecord] | None = None) -> RunRecord:
        values = _fields(
            cls,
            row,
            template_snapshot=bytes(row["template_snapshot"]),
            inputs=dict(row["inputs"]),
            status=RunStatus(row["status"]),
            refund_policy=RefundPolicy(row["refund_policy"]),
            refund_state=RefundState(row["refund_state"]),
            steps=steps or [],
        )
        return cls(**values)

    @property
    def is_final(self) -> bool:
        return self.status in FINAL


@dataclass(frozen=True)
class NewRun(RunStart):
    """A run as `start` writes it: it begins `debiting`, its steps (indexed in order) `pending`."""

    steps: list[StepStart]


async def insert_run(session: AsyncSession, run: NewRun) -> bool:
    """Insert a run and its steps; False when the caller's idempotency key already has a run."""
    start = {f.name: getattr(run, f.name) for f in fields(RunStart)}
    created = (
        await session.execute(
            pg_insert(runs)
            .values(**start, status=RunStatus.DEBITING)
            .on_conflict_do_nothing(index_elements=[runs.c.user_id, runs.c.idempotency_key])
            .returning(runs.c.id)
        )
    ).first()
    if created is None:
        return False
    if run.steps:
        await session.execute(
            insert(run_steps),
            [
                {
                    "run_id": run.id,
                    "index": index,
                    "key": step.key,
                    "kind": step.kind,
                    "model_code": step.model_code,
                    "status": StepStatus.PENDING,
                }
                for index, step in enumerate(run.steps)
            ],
        )
    return True


async def _steps(session: AsyncSession, run_ids: list[str]) -> dict[str, list[StepRecord]]:
    by_run: dict[str, list[StepRecord]] = {run_id: [] for run_id in run_ids}
    if not run_ids:
        return by_run
    rows = (
        await session.execute(
            select(run_steps).where(run_steps.c.run_id.in_(run_ids)).order_by(run_steps.c.index)
        )
    ).mappings()
    for row in rows:
        by_run[row["run_id"]].append(StepRecord.of(row))
    return by_run


async def get_run(session: AsyncSession, run_id: str, *, lock: bool = False) -> RunRecord | None:
    query = select(runs).where(runs.c.id == run_id)
    if lock:
        query = query.with_for_update()
    row = (await session.execute(query)).mappings().first()
    if row is None:
        return None
    return RunRecord.of(row, (await _steps(session, [run_id]))[run_id])


async def get_run_by_key(session: AsyncSession, user_id: str, idempotency_key: str) -> RunRecord | None:
    row = (
        (
            await session.execute(
                select(runs).where(runs.c.user_id == user_id, runs.c.idempotency_key == idempotency_key)
            )
        )
        .mappings()
        .first()
    )
    if row is None:
        return None
    return RunRecord.of(row, (await _steps(session, [row["id"]]))[row["id"]])


async def list_runs(
    session: AsyncSession,
    user_id: str,
    *,
    limit: int,
    after: tuple[datetime, str] | None,
    status: RunStatus | None,
    template_code: str | None,
) -> list[RunRecord]:
    query = select(runs).where(runs.c.user_id == user_id)
    if after is not None:
        cursor = tuple_(literal(after[0]), literal(after[1]))
        query = query.where(tuple_(runs.c.created_at, runs.c.id) < cursor)
    if status is not None:
        # A run still debiting is pending to its owner.
        shown_as = (RunStatus.DEBITING, RunStatus.PENDING) if status == RunStatus.PENDING else (status,)
        query = query.where(runs.c.status.in_(shown_as))
    if template_code:
        query = query.where(runs.c.template_code == template_code)
    query = query.order_by(runs.c.created_at.desc(), runs.c.id.desc()).limit(limit)
    rows = list((await session.execute(query)).mappings())
    steps = await _steps(session, [row["id"] for row in rows])
    return [RunRecord.of(row, steps[row["id"]]) for row in rows]


async def update_run(session: AsyncSession, run_id: str, **values: Any) -> None:
    await session.execute(update(runs).where(runs.c.id == run_id).values(updated_at=func.now(), **values))


async def update_step(session: AsyncSession, run_id: str, index: int, **values: Any) -> None:
    await session.execute(
        update(run_steps)
        .where(run_steps.c.run_id == run_id, run_steps.c.index == index)
        .values(updated_at=func.now(), **values)
    )


async def set_step_task_id(session: AsyncSession, run_id: str, index: int, task_id: str) -> None:
    """Compare-and-set: only a running step without a task yet takes the id."""
    await session.execute(
        update(run_steps)
        .where(
            run_steps.c.run_id == run_id,
            run_steps.c.index == index,
            run_steps.c.status == StepStatus.RUNNING,
            run_steps.c.task_id.is_(None),
        )
        .values(task_id=task_id, updated_at=func.now())
    )


async def delete_debiting_run(session: AsyncSession, run_id: str) -> bool:
    deleted = await session.execute(
        delete(runs).where(runs.c.id == run_id, runs.c.status == RunStatus.DEBITING).returning(runs.c.id)
    )
    return deleted.first() is not None


async def runs_to_resume(
    session: AsyncSession, *, debit_stale_after: timedelta, poll_after: timedelta, limit: int
) -> list[str]:
    """Runs the resume loop must look at: debits gone stale, owed refunds, and unfinished runs that are
    not simply waiting for a recent task (no step running, a step without its task id, a task
    running for longer than `poll_after`, or a cancel request)."""
    running = run_steps.alias("running")
    waiting_normally = (
        select(running.c.run_id)
        .where(
            running.c.run_id == runs.c.id,
            running.c.status == StepStatus.RUNNING,
            running.c.task_id.is_not(None),
            running.c.started_at >= func.now() - poll_after,
        )
        .exists()
    )
    query = (
        select(runs.c.id)
        .where(
            or_(
                and_(
                    runs.c.status.in_((RunStatus.PENDING, RunStatus.RUNNING)),
                    or_(runs.c.cancel_requested, ~waiting_normally),
                ),
                and_(runs.c.status == RunStatus.DEBITING, runs.c.created_at < func.now() - debit_stale_after),
                runs.c.refund_state == RefundState.PENDING,
            )
        )
        .order_by(runs.c.updated_at)
        .limit(limit)
    )
    return list((await session.execute(query)).scalars())
