"""The durable run loop: the edge that owns transactions and the calls to other services.

Every external effect is idempotent by a deterministic id, and every decision is committed before
the effect it asks for, so a crash at any point leaves a state the resume loop can finish:

- start: the run row is committed in `debiting` *before* the ledger call; the debit id is
  `run:{run_id}:debit`, so retrying it (same request, the resume loop) never debits twice, and a
  crash after the ledger answered never loses the debit. When the commit that confirms the debit
  fails (a live process sees it), the run fails and is refunded at once (`kit.compensation`).
- steps: a step is marked `running` before its task is submitted with the idempotency key
  `run:{run_id}:step:{index}:{key}`; generation returns the same task to any resubmission.
- completions: `tasks.completed` is handled once per event id (inbox) and only moves a `running`
  step, under the run's row lock (several replicas are safe).
- refunds: the amount is fixed in the transaction that ends the run (`refund_state = pending`);
  the ledger call uses `run:{run_id}:refund`, and `runs.completed` leaves once it is written.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from atelier.common.v1 import common_pb2
from atelier.events.v1 import events_pb2
from atelier.generation.v1 import generation_pb2
from atelier.ledger.v1 import ledger_pb2
from kit.compensation import owned_or_undone
from kit.cursors import decode_cursor, encode_cursor, split_page
from kit.db import Database
from kit.errors import Conflict, DomainError, FailedPrecondition, NotFound, Unavailable
from kit.idempotency import same_request
from kit.identity import Identity
from kit.inbox import Inbox
from kit.outbox import Outbox
from kit.telemetry import current_trace_id
from services.workflow import events, metrics, repository, service
from services.workflow.clients import Clients
from services.workflow.models import RefundPolicy, RefundState, RunStatus, StepStatus
from services.workflow.models import inbox as inbox_table
from services.workflow.repository import RunRecord
from services.workflow.settings import WorkflowSettings

log = logging.getLogger(__name__)


FINAL_TASK = (
    generation_pb2.TASK_STATUS_SUCCEEDED,
    generation_pb2.TASK_STATUS_FAILED,
    generation_pb2.TASK_STATUS_CANCELED,
)


def _transient(exc: DomainError) -> bool:
    """Failures worth retrying later with the same ids (the peer may have applied the call)."""
    return isinstance(exc, Unavailable) or exc.code in ("upstream_unavailable", "unavailable")


class Runner:
    def __init__(
        self,
        db: Database,
        outbox: Outbox,
        clients: Clients,
        settings: WorkflowSettings,
        notify: Callable[[], None] | None = None,
    ) -> None:
        self.db = db
        self.outbox = outbox
        self.inbox = Inbox(inbox_table)
        self.clients = clients
        self.settings = settings
        self._notify = notify or (lambda: None)

    # -- start -----------------------------------------------------------------------------------
    async def start(
        self, identity: Identity, idempotency_key: str, template_code: str, inputs: dict[str, Any]
    ) -> tuple[RunRecord, bool]:
        key = idempotency_key or uuid.uuid4().hex
        digest = service.request_hash(template_code, inputs)
        replay = await self._replay(identity.user_id, key, digest)
        if replay is not None:
            return replay, False

        reply = await self.clients.get_template(identity.user_id, template_code)
        template = reply.template
        if not template.enabled:
            raise FailedPrecondition(
                f"the template {template_code!r} is disabled",
                code="template_disabled",
                template=template_code,
            )
        if not template.steps:
            raise FailedPrecondition(f"the template {template_code!r} has no steps", code="template_invalid")

        async def check_upload(upload_id: str) -> None:
            await self.clients.get_upload(identity.user_id, upload_id)

        clean = await service.validate_inputs(
            template,
            inputs,
            check_upload=check_upload,
            text_max_length=self.settings.default_text_max_length,
            max_uploads=self.settings.default_max_uploads,
        )
        run_id = str(uuid.uuid4())
        async with self.db.transaction() as session:
            created = await repository.insert_run(
                session,
                repository.NewRun(
                    id=run_id,
                    user_id=identity.user_id,
                    idempotency_key=key,
                    request_hash=digest,
                    template_code=template.code or template_code,
                    template_snapshot=template.SerializeToString(deterministic=True),
                    catalog_version=reply.catalog_version,
                    inputs=clean,
                    price_milli=template.price.milli,
                    refund_policy=service.POLICIES.get(template.refund_policy, RefundPolicy.FULL),
                    trace_id=current_trace_id(),
                    steps=[
                        repository.StepStart(
                            key=step.key,
                            kind=service.KIND_NAMES.get(step.kind, "text"),
                            model_code=step.model_code,
                        )
                        for step in template.steps
                    ],
                ),
            )
        if not created:  # a concurrent start with the same key won the insert
            replay = await self._replay(identity.user_id, key, digest)
            if replay is None:
                raise Conflict("a concurrent start with this idempotency key failed; retry")
            return replay, False
        await self.finish_debit(run_id, raise_errors=True)
        await self._drive_quietly(run_id)
        return await self.get(run_id), True

    async def _replay(self, user_id: str, key: str, digest: str) -> RunRecord | None:
        async with self.db.transaction() as session:
            existing = await repository.get_run_by_key(session, user_id, key)
        if existing is None:
            return None
        same_request(existing, digest, "this idempotency key was used for another start request")
        if existing.status == RunStatus.DEBITING:
            await self.finish_debit(existing.id, raise_errors=True)
            await self._drive_quietly(existing.id)
        async with self.db.transaction() as session:
            again = await repository.get_run(session, existing.id)
        if again is None:
            raise Conflict("the earlier start with this idempotency key was refused; retry")
        return again

    async def finish_debit(self, run_id: str, *, raise_errors: bool = False) -> None:
        """Debit a `debiting` run (idempotently) and let it run; delete it when the ledger refuses."""
        async with self.db.transaction() as session:
            run = await repository.get_run(session, run_id)
        if run is None or run.status != RunStatus.DEBITING:
            return
        transfer_id = service.debit_transfer_id(run_id)
        if run.price_milli > 0:
            request = ledger_pb2.DebitRequest(
                transfer_id=transfer_id,
                user_id=run.user_id,
                amount=common_pb2.Credits(milli=run.price_milli),
                reference=ledger_pb2.Reference(type=ledger_pb2.REFERENCE_TYPE_RUN, id=run_id),
                metadata={"kind": "workflow", "template": run.template_code},
            )
            try:
                reply = await self.clients.debit(request)
            except DomainError as exc:
                if not _transient(exc):
                    # Refused (insufficient_balance, ...): nothing stays behind, a retry starts afresh.
                    async with self.db.transaction() as session:
                        await repository.delete_debiting_run(session, run_id)
                if raise_errors:
                    raise
                log.warning("debit of run %s not confirmed: %r", run_id, exc)
                return
            transfer_id = reply.transfer.id or transfer_id
        async with self._owned(run, transfer_id), self.db.transaction() as session:
            run = await repository.get_run(session, run_id, lock=True)
            if run is None or run.status != RunStatus.DEBITING:
                return
            await repository.update_run(
                session,
                run_id,
                status=RunStatus.PENDING,
                debit_transfer_id=transfer_id if run.price_milli > 0 else None,
                started_at=datetime.now(UTC),
            )
            await events.run_started(self.outbox, session, run, transfer_id if run.price_milli > 0 else "")
            # The first step's submission intent commits with the debit confirmation.
            run = await repository.get_run(session, run_id)
            assert run is not None
            await service.next_action(session, self.outbox, run)
        metrics.RUNS_STARTED.labels(run.template_code).inc()
        self._notify()

    def _owned(self, run: RunRecord, transfer_id: str) -> AbstractAsyncContextManager[None]:
        """Unwinds the debit `transfer_id` of a `debiting` run if confirming it fails, unless it was
        confirmed after all (the commit went through before its answer was lost, or another replica)."""
        if run.price_milli <= 0:
            return contextlib.nullcontext()

        async def confirmed() -> bool:
            async with self.db.session() as session:
                found = await repository.get_run(session, run.id)
            return found is None or found.status != RunStatus.DEBITING

        return owned_or_undone(
            f"debit {transfer_id}", owned=confirmed, undo=lambda: self._unwind_debit(run.id, transfer_id)
        )

    async def _unwind_debit(self, run_id: str, transfer_id: str) -> None:
        """Fail a debited run that could not start and refund it in full. The refund is owed in the
        same transaction that fails the run, so the resume loop writes it if the ledger cannot now."""
        async with self.db.transaction() as session:
            run = await repository.get_run(session, run_id, lock=True)
            if run is None or run.status != RunStatus.DEBITING:
                return
            await repository.update_run(session, run_id, debit_transfer_id=transfer_id)
            await service.finalize(
                session,
                self.outbox,
                replace(run, debit_transfer_id=transfer_id),
                RunStatus.FAILED,
                error_code="start_failed",
                error_message="the run could not be started; its price is refunded",
            )
        await self._refund(run_id)

    # -- advancing -------------------------------------------------------------------------------
    async def drive(self, run_id: str) -> None:
        """Advance a run until it waits for a task, or ends (refund written)."""
        for _ in range(64):
            async with self.db.transaction() as session:
                run = await repository.get_run(session, run_id, lock=True)
                if run is None:
                    return
                action = await service.next_action(session, self.outbox, run)
                if action.kind == "submit":
                    # Outputs of earlier steps as committed (the lock keeps them stable).
                    run = await repository.get_run(session, run_id)
                    assert run is not None
            self._notify()
            if action.kind == "submit":
                assert action.step is not None
                if not await self._submit(run, action.step):
                    return
                continue
            if action.kind == "refund":
                await self._refund(run_id)
            elif action.kind == "wait" and action.step is not None:
                if await self._poll(run, action.step):
                    continue
            return

    async def _submit(self, run: RunRecord, step: repository.StepRecord) -> bool:
        """Submit a step's task; True when the run should be looked at again (the step failed)."""
        request = service.step_request(run, step)
        try:
            reply = await self.clients.submit_task(run.user_id, request)
        except DomainError as exc:
            if _transient(exc):
                log.warning("step %s of run %s not submitted yet: %r", step.key, run.id, exc)
                return False
            async with self.db.transaction() as session:
                locked = await repository.get_run(session, run.id, lock=True)
                current = next((s for s in locked.steps if s.index == step.index), None) if locked else None
                if (
                    locked is None
                    or current is None
                    or current.status != StepStatus.RUNNING
                    or current.task_id
                ):
                    return False
                await repository.update_step(
                    session,
                    run.id,
                    step.index,
                    status=StepStatus.FAILED,
                    finished_at=datetime.now(UTC),
                    error_code=exc.code,
                    error_message=exc.message,
                )
                await events.run_progress(
                    self.outbox, session, locked, locked.status, step.key, StepStatus.FAILED
                )
            return True
        async with self.db.transaction() as session:
            await repository.set_step_task_id(session, run.id, step.index, reply.task.id)
        task = reply.task
        if task.status in FINAL_TASK:
            # Already final (a resubmission after a crash): no need to wait for the event.
            return await self._complete(
                run.id, step.key, task.id, task.status, list(task.outputs), task.error, run.user_id
            )
        return False

    async def _poll(self, run: RunRecord, step: repository.StepRecord) -> bool:
        """Ask generation about a step waiting too long for its event; True when it ended."""
        if step.task_id is None or step.started_at is None:
            return False
        if datetime.now(UTC) - step.started_at < timedelta(seconds=self.settings.task_poll_seconds):
            return False
        try:
            task = await self.clients.get_task(run.user_id, step.task_id)
        except DomainError as exc:
            log.warning("polling task %s of run %s failed: %r", step.task_id, run.id, exc)
            return False
        if task.status not in FINAL_TASK:
            return False
        return await self._complete(
            run.id, step.key, task.id, task.status, list(task.outputs), task.error, run.user_id
        )

    async def _refund(self, run_id: str) -> None:
        async with self.db.transaction() as session:
            run = await repository.get_run(session, run_id)
        if run is None or run.refund_state != RefundState.PENDING or not run.debit_transfer_id:
            return
        request = ledger_pb2.RefundRequest(
            transfer_id=service.refund_transfer_id(run_id),
            original_transfer_id=run.debit_transfer_id,
            amount=common_pb2.Credits(milli=run.refund_milli),
            reason=f"workflow run {run.status}",
            metadata={"kind": "workflow", "template": run.template_code, "run_id": run_id},
        )
        try:
            reply = await self.clients.refund(request)
        except DomainError as exc:
            log.warning("refund of run %s not written yet: %r", run_id, exc)
            return
        async with self.db.transaction() as session:
            run = await repository.get_run(session, run_id, lock=True)
            if run is None or run.refund_state != RefundState.PENDING:
                return
            transfer_id = reply.transfer.id or request.transfer_id
            await repository.update_run(
                session, run_id, refund_state=RefundState.DONE, refund_transfer_id=transfer_id
            )
            metrics.REFUNDED_MILLI.labels(run.template_code).inc(run.refund_milli)
            await events.run_completed(
                self.outbox,
                session,
                run,
                status=run.status,
                refund_milli=run.refund_milli,
                refund_transfer_id=transfer_id,
                error_code=run.error_code,
                error_message=run.error_message,
            )
        self._notify()

    async def _drive_quietly(self, run_id: str) -> None:
        try:
            await self.drive(run_id)
        except Exception:  # the resume loop picks the run up again
            log.exception("advancing run %s failed; the resume loop will retry", run_id)

    # -- completions -----------------------------------------------------------------------------
    async def on_task_completed(self, event_id: str, event: events_pb2.TaskCompleted) -> None:
        if not event.internal or not event.run_id or not event.step_key:
            return
        async with self.db.transaction() as session:
            if not await self.inbox.claim(session, events.STEPS_CONSUMER, event_id):
                return
            changed = await self._record(session, event.run_id, event.step_key, event, event.user_id)
        if changed:
            self._notify()
            await self._drive_quietly(event.run_id)

    async def _complete(
        self,
        run_id: str,
        step_key: str,
        task_id: str,
        status: generation_pb2.TaskStatus.ValueType,
        outputs: list[generation_pb2.TaskOutput],
        error: common_pb2.ErrorDetail,
        user_id: str,
    ) -> bool:
        event = events_pb2.TaskCompleted(
            task_id=task_id, status=status, outputs=outputs, error=error, run_id=run_id, step_key=step_key
        )
        async with self.db.transaction() as session:
            return await self._record(session, run_id, step_key, event, user_id)

    async def _record(
        self, session: AsyncSession, run_id: str, step_key: str, event: events_pb2.TaskCompleted, user_id: str
    ) -> bool:
        run = await repository.get_run(session, run_id, lock=True)
        if run is None or (user_id and run.user_id != user_id):
            return False
        return await service.record_completion(
            session,
            self.outbox,
            run,
            step_key=step_key,
            task_id=event.task_id,
            succeeded=event.status == generation_pb2.TASK_STATUS_SUCCEEDED,
            outputs=list(event.outputs),
            error=event.error if event.HasField("error") else None,
        )

    # -- reading and canceling -------------------------------------------------------------------
    async def get(self, run_id: str, user_id: str | None = None) -> RunRecord:
        async with self.db.transaction() as session:
            run = await repository.get_run(session, run_id)
        if run is None or (user_id is not None and run.user_id != user_id):
            raise NotFound("no such workflow run", code="run_not_found")
        return run

    async def list_runs(
        self, user_id: str, *, cursor: str, limit: int, status: RunStatus | None, template_code: str | None
    ) -> tuple[list[RunRecord], str]:
        """One page of the user's runs, newest first, and the cursor of the next page ("" at the end)."""
        after = decode_cursor(cursor)
        async with self.db.transaction() as session:
            runs = await repository.list_runs(
                session, user_id, limit=limit + 1, after=after, status=status, template_code=template_code
            )
        return split_page(runs, limit, lambda r: encode_cursor(r.created_at, r.id))

    async def cancel(self, user_id: str, run_id: str) -> RunRecord:
        async with self.db.transaction() as session:
            run = await repository.get_run(session, run_id, lock=True)
            if run is None or run.user_id != user_id:
                raise NotFound("no such workflow run", code="run_not_found")
            in_flight = [s.task_id for s in run.steps if s.status == StepStatus.RUNNING and s.task_id]
            if run.is_final or run.cancel_requested:
                in_flight = []
            else:
                await repository.update_run(session, run_id, cancel_requested=True)
        await self._drive_quietly(run_id)
        for task_id in in_flight:
            # Best effort: stop paying the provider for a result nobody will use. Whatever happens,
            # the step is already skipped and its completion will be ignored.
            try:
                await self.clients.cancel_task(user_id, task_id)
            except DomainError as exc:
                log.info("could not cancel task %s of run %s: %r", task_id, run_id, exc)
        return await self.get(run_id, user_id)

    # -- recovery --------------------------------------------------------------------------------
    async def resume_all(self) -> int:
        """Finish stale debits, resubmit unconfirmed steps and write owed refunds. Returns runs seen."""
        async with self.db.transaction() as session:
            run_ids = await repository.runs_to_resume(
                session,
                debit_stale_after=timedelta(seconds=self.settings.debit_stale_seconds),
                poll_after=timedelta(seconds=self.settings.task_poll_seconds),
                limit=500,
            )
        metrics.RESUMED.inc(len(run_ids))
        for run_id in run_ids:
            try:
                await self.finish_debit(run_id)
                await self.drive(run_id)
            except Exception:
                log.exception("resuming run %s failed", run_id)
        return len(run_ids)

    async def resume_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.resume_all()
            except Exception:
                log.exception("resume loop failed")
            try:
                await asyncio.wait_for(stop.wait(), timeout=self.settings.resume_interval_seconds)
            except TimeoutError:
                pass
