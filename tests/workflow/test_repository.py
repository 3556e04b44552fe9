"""The resume loop's work list: what it must pick up, and the runs simply waiting that it leaves alone."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import insert

from kit.db import Database
from services.workflow import repository
from services.workflow.models import run_steps, runs

STALE = timedelta(seconds=10)
POLL = timedelta(minutes=2)


async def make_run(
    db: Database, status: str, steps: list[tuple[str, str | None, timedelta]], **extra: object
) -> str:
    """A run written straight into the tables, in whatever state the case needs."""
    run_id = str(uuid.uuid4())
    now = datetime.now(UTC)
    async with db.transaction() as session:
        await session.execute(
            insert(runs).values(
                id=run_id,
                user_id="u1",
                idempotency_key=run_id,
                request_hash="h",
                template_code="t",
                template_snapshot=b"",
                inputs={},
                status=status,
                price_milli=1000,
                refund_policy="full",
                **extra,
            )
        )
        if steps:
            await session.execute(
                insert(run_steps),
                [
                    {
                        "run_id": run_id,
                        "index": i,
                        "key": f"s{i}",
                        "kind": "image",
                        "model_code": "m",
                        "status": step_status,
                        "task_id": task_id,
                        "started_at": now - age,
                    }
                    for i, (step_status, task_id, age) in enumerate(steps)
                ],
            )
    return run_id


async def test_the_resume_loop_picks_exactly_the_runs_that_need_it(db: Database) -> None:
    recent, old = timedelta(seconds=1), timedelta(minutes=5)
    waiting = await make_run(db, "running", [("succeeded", "t1", old), ("running", "t2", recent)])
    done = await make_run(db, "succeeded", [("succeeded", "t1", old)])
    fresh_debit = await make_run(db, "debiting", [("pending", None, recent)])

    unsubmitted = await make_run(db, "running", [("running", None, recent)])
    between_steps = await make_run(db, "running", [("succeeded", "t1", old), ("pending", None, recent)])
    failed_step = await make_run(db, "running", [("failed", "t1", old), ("pending", None, recent)])
    long_task = await make_run(db, "running", [("running", "t1", old)])
    canceling = await make_run(db, "running", [("running", "t1", recent)], cancel_requested=True)
    owed = await make_run(db, "failed", [("failed", "t1", old)], refund_state="pending", refund_milli=1000)
    stale_debit = await make_run(
        db, "debiting", [("pending", None, recent)], created_at=datetime.now(UTC) - timedelta(minutes=1)
    )

    async with db.session() as session:
        picked = set(
            await repository.runs_to_resume(session, debit_stale_after=STALE, poll_after=POLL, limit=100)
        )

    assert picked == {unsubmitted, between_steps, failed_step, long_task, canceling, owed, stale_debit}
    assert not picked & {waiting, done, fresh_debit}
