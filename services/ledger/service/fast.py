"""The happy path of holds and captures: one step of the server-side `ledger_apply` each, which
writes everything or nothing. Alone (`hold_fast`) or group-committed with its neighbours
(`FastLane`, over `batch.GroupCommit`); a step that wrote nothing goes the general path (`holds.py`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Unpack

from opentelemetry import context as otel_context
from sqlalchemy.ext.asyncio import AsyncSession

from kit.db import after_commit
from kit.money import Credits
from services.ledger import repository as repo
from services.ledger.batch import Connection, GroupCommit
from services.ledger.repository.records import StepRecord
from services.ledger.service.holds import CapturePlan, CaptureRequest, HoldPlan, HoldRequest, Holds
from services.ledger.service.values import (
    REVENUE,
    Balance,
    Kind,
    Reference,
    Status,
    Transfer,
    TransferResult,
    _committed,
)


@dataclass(frozen=True)
class FastStep:
    """One transfer's happy path: a step of `ledger_apply` (its `kind` and arguments) and how to read
    its row."""

    params: dict[str, Any]
    result: Callable[[StepRecord], TransferResult]
    trace: otel_context.Context

    @classmethod
    def of(
        cls,
        kind: str,
        plan: HoldPlan | CapturePlan,
        result: Callable[[StepRecord], TransferResult],
        **params: Any,
    ) -> FastStep:
        """A step of `kind` for a checked plan: its transfer id, metadata, trace id and digest as every
        step names them, and the `params` of its kind."""
        common = {
            "kind": kind,
            "id": plan.transfer_id,
            "metadata": plan.metadata,
            "trace_id": plan.trace_id,
            "request_hash": plan.digest,
        }
        return cls({**common, **params}, result, plan.trace)


class Fast(Holds):
    """Holds and captures: the happy path in one server-side call, the general path when it wrote nothing."""

    async def hold(self, session: AsyncSession, **request: Unpack[HoldRequest]) -> TransferResult:
        """Reserves `amount` of the available balance until it is captured, released or expires."""
        plan = self.plan_hold(**request)
        return await self.hold_fast(session, plan) or await self.hold_general(session, plan)

    def hold_step(self, plan: HoldPlan) -> FastStep:
        """The happy path as one call; its result is None (nothing written) when `hold_general` must
        run: a first use of the wallet, a retry, a refused id, too little balance."""

        def result(row: StepRecord) -> TransferResult:
            transfer = Transfer(
                id=plan.transfer_id,
                kind=Kind.HOLD,
                debit_account=plan.account,
                credit_account=REVENUE,
                amount=plan.amount,
                status=Status.PENDING,
                user_id=plan.user_id,
                reference=plan.reference,
                metadata=plan.metadata,
                trace_id=plan.trace_id,
                created_at=row.created_at,
                expires_at=plan.expires_at,
            )
            return TransferResult(transfer, Balance.from_row(plan.user_id, row), False)

        return FastStep.of(
            "hold",
            plan,
            result,
            user_id=plan.user_id,
            wallet=plan.account,
            credit_account=REVENUE,
            amount=plan.amount.milli,
            expires_at=plan.expires_at,
            reference_type=plan.reference.type,
            reference_id=plan.reference.id,
        )

    async def hold_fast(self, session: AsyncSession, plan: HoldPlan) -> TransferResult | None:
        return await self._apply_alone(session, self.hold_step(plan))

    async def capture(self, session: AsyncSession, **request: Unpack[CaptureRequest]) -> TransferResult:
        """Posts all of a pending hold, or part of it with the rest released. Exactly once."""
        plan = self.plan_capture(**request)
        return await self.capture_fast(session, plan) or await self.capture_general(session, plan)

    def capture_step(self, plan: CapturePlan) -> FastStep:
        """The happy path as one call; its result is None (nothing written) when `capture_general`
        must run: a retry, an unknown, resolved or expired hold, too large an amount."""

        def result(row: StepRecord) -> TransferResult:
            held = row.captured
            assert held is not None, "a capture step's row names its hold"
            reference = Reference(held.hold_reference_type, held.hold_reference_id)
            hold = Transfer(
                id=plan.hold_id,
                kind=Kind.HOLD,
                debit_account=held.hold_debit_account,
                credit_account=held.hold_credit_account,
                amount=Credits(int(held.hold_amount)),
                status=Status.POSTED,
                user_id=held.hold_user_id,
                reference=reference,
                metadata=dict(held.hold_metadata),
                trace_id=held.hold_trace_id,
                created_at=held.hold_created_at,
                expires_at=held.hold_expires_at,
                resolved_at=held.resolved_at,
            )
            # The capture is posted between the hold's accounts, for its user and reference.
            capture = replace(
                hold,
                id=plan.transfer_id,
                kind=Kind.CAPTURE,
                amount=Credits(int(held.amount)),
                metadata={**hold.metadata, **plan.metadata},
                trace_id=plan.trace_id,
                created_at=row.created_at,
                linked_transfer_id=plan.hold_id,
                expires_at=None,
                resolved_at=None,
            )
            return TransferResult(capture, Balance.from_row(hold.user_id, row), False, hold)

        amount = plan.amount.milli if plan.amount is not None else None
        return FastStep.of("capture", plan, result, hold_id=plan.hold_id, amount=amount, now=plan.now)

    async def capture_fast(self, session: AsyncSession, plan: CapturePlan) -> TransferResult | None:
        return await self._apply_alone(session, self.capture_step(plan))

    async def _apply_alone(self, session: AsyncSession, step: FastStep) -> TransferResult | None:
        """One step in the session's transaction, counted once it commits."""
        connection = await repo.driver_connection(session)
        async with connection.pipeline():
            (result,) = await self.apply_fast(connection, [step])
        after_commit(session, lambda: self.posted([result]))
        return result

    async def apply_fast(
        self, connection: Connection, steps: Sequence[FastStep]
    ) -> list[TransferResult | None]:
        """Runs the steps in order in the connection's open transaction, then queues one
        `balances.changed` event per transfer made, in one statement. None for each step that wrote
        nothing. In pipeline mode the steps take one round trip and the events none of their own."""
        rows = await repo.apply_steps(connection, [step.params for step in steps])
        results = [
            step.result(row) if row is not None else None for step, row in zip(steps, rows, strict=True)
        ]
        await self.outbox.add_many_on(
            connection,
            [
                self._balance_event(result.balance, result.transfer.id, step.trace)
                for step, result in zip(steps, results, strict=True)
                if result is not None
            ],
        )
        return results

    @staticmethod
    def posted(results: Sequence[TransferResult | None]) -> None:
        """Once the fast path's transaction committed: what `_new_transfer` arranges on the general path."""
        for result in results:
            if result is not None:
                _committed(result.transfer)


class FastLane:
    """Holds and captures sharing commits (`batch.GroupCommit`) on connections of the lane's own: the
    edge hands a checked plan and gets the committed result, or None, and then takes the general
    path in a transaction of its own. `on_commit` runs after each batch that committed."""

    def __init__(
        self,
        ledger: Fast,
        connect: Callable[[], Awaitable[Connection]],
        *,
        on_commit: Callable[[], None] | None = None,
    ) -> None:
        self.ledger = ledger
        self.on_commit = on_commit
        self.batch: GroupCommit[FastStep, TransferResult] = GroupCommit(
            connect, ledger.apply_fast, after_commit=self._committed
        )

    def _committed(self, results: Sequence[TransferResult | None]) -> None:
        self.ledger.posted(results)
        if self.on_commit is not None:
            self.on_commit()

    async def hold(self, plan: HoldPlan) -> TransferResult | None:
        return await self.batch.run(self.ledger.hold_step(plan))

    async def capture(self, plan: CapturePlan) -> TransferResult | None:
        return await self.batch.run(self.ledger.capture_step(plan))

    async def close(self) -> None:
        await self.batch.close()
