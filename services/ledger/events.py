"""What the ledger consumes and publishes.

Publishes (through the outbox, in the transaction of the change):
  balances.changed    BalanceChanged      on every wallet change
  payments.completed  RechargeCompleted   when a recharge order is credited

Consumes (durable JetStream consumers; each event claimed in the inbox in the same transaction as
its effects, so a redelivery changes nothing):
  tasks.completed     TaskCompleted       capture the task's hold on success, release it otherwise
  runs.completed      RunCompleted        refund a failed run as its refund policy decided
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from google.protobuf.message import DecodeError, Message
from sqlalchemy.ext.asyncio import AsyncSession

from atelier.events.v1 import events_pb2
from atelier.generation.v1 import generation_pb2
from kit.bus import Delivery, Permanent
from kit.errors import DomainError, FailedPrecondition, NotFound
from kit.inbox import Inbox
from kit.money import Credits
from kit.service import Runtime
from services.ledger import repository as repo
from services.ledger.models import inbox as inbox_table
from services.ledger.service import Ledger

log = logging.getLogger(__name__)
EventT = TypeVar("EventT", bound=Message)

TASKS_COMPLETED = "tasks.completed"
RUNS_COMPLETED = "runs.completed"
SETTLEMENT_CONSUMER = "ledger-settlement"
RUN_REFUND_CONSUMER = "ledger-run-refunds"

# A hold someone else already resolved: settling it again is a no-op, not a failure.
_ALREADY_RESOLVED = {"hold_already_captured", "hold_already_released", "hold_expired"}


async def settle_task(session: AsyncSession, ledger: Ledger, event: events_pb2.TaskCompleted) -> str:
    """Captures the hold of a succeeded task (its charge, or the whole hold) and releases it otherwise.
    Returns what was done, for logs and tests."""
    hold_id = event.hold_id
    status = event.status
    try:
        if status == generation_pb2.TASK_STATUS_SUCCEEDED:
            hold = await ledger.get_transfer(session, hold_id)
            charge = Credits(event.charge.milli) if event.HasField("charge") else hold.amount
            if charge.milli > hold.amount.milli:
                log.warning("task %s charges more than its hold; capturing the hold", event.task_id)
                charge = hold.amount
            if charge.milli > 0:
                await ledger.capture(
                    session,
                    transfer_id=f"capture:{hold_id}",
                    hold_id=hold_id,
                    amount=charge,
                    metadata={"task_status": "succeeded"},
                )
                return "captured"
        elif status not in (generation_pb2.TASK_STATUS_FAILED, generation_pb2.TASK_STATUS_CANCELED):
            return "ignored"
        await ledger.release(
            session,
            transfer_id=f"release:{hold_id}",
            hold_id=hold_id,
            reason=generation_pb2.TaskStatus.Name(status).removeprefix("TASK_STATUS_").lower(),
        )
        return "released"
    except FailedPrecondition as exc:
        if exc.code in _ALREADY_RESOLVED:
            log.info("hold %s of task %s already resolved (%s)", hold_id, event.task_id, exc.code)
            return exc.code
        raise


async def refund_run(session: AsyncSession, ledger: Ledger, event: events_pb2.RunCompleted) -> str:
    if event.refund.milli <= 0 or not event.refund_transfer_id or not event.debit_transfer_id:
        return "no refund"
    if await repo.get_transfer(session, event.refund_transfer_id) is not None:
        return "already refunded"  # e.g. the workflow called Refund itself with this id
    result = await ledger.refund(
        session,
        transfer_id=event.refund_transfer_id,
        original_transfer_id=event.debit_transfer_id,
        amount=Credits(event.refund.milli),
        reason=f"run {event.run_id} refund policy",
    )
    return "refunded" if not result.replayed else "already refunded"


def _decode(message: type[EventT], delivery: Delivery) -> EventT:
    try:
        return message.FromString(delivery.data)
    except DecodeError as exc:
        raise Permanent(f"undecodable {message.__name__}: {exc}") from exc


class Consumers:
    """The ledger's event handlers, bound to a running process."""

    def __init__(self, runtime: Runtime, ledger: Ledger) -> None:
        self.runtime = runtime
        self.ledger = ledger
        self.inbox = Inbox(inbox_table)

    async def on_task_completed(self, delivery: Delivery) -> None:
        event = _decode(events_pb2.TaskCompleted, delivery)
        if not event.hold_id:
            return  # internal workflow steps carry no charge of their own
        outcome = await self._claimed(
            SETTLEMENT_CONSUMER,
            delivery.event_id or event.meta.event_id,
            lambda session: settle_task(session, self.ledger, event),
            refusals=(NotFound,),
            subject=f"task {event.task_id}",
        )
        if outcome is not None:
            log.info("task %s settled: %s", event.task_id, outcome)

    async def on_run_completed(self, delivery: Delivery) -> None:
        event = _decode(events_pb2.RunCompleted, delivery)
        outcome = await self._claimed(
            RUN_REFUND_CONSUMER,
            delivery.event_id or event.meta.event_id,
            lambda session: refund_run(session, self.ledger, event),
            refusals=(NotFound, FailedPrecondition),
            subject=f"run {event.run_id}",
        )
        if outcome is not None:
            log.info("run %s: %s", event.run_id, outcome)

    async def _claimed(
        self,
        consumer: str,
        event_id: str,
        handle: Callable[[AsyncSession], Awaitable[str]],
        *,
        refusals: tuple[type[DomainError], ...],
        subject: str,
    ) -> str | None:
        """`handle` in one transaction with the event's inbox claim: its outcome, or None when the
        event was handled before. A refusal among `refusals` is Permanent (redelivery cannot help)."""
        try:
            async with self.runtime.db.transaction() as session:
                if not await self.inbox.claim(session, consumer, event_id):
                    return None
                outcome = await handle(session)
        except refusals as exc:
            raise Permanent(f"{subject}: {exc.message}") from exc
        self._notify()
        return outcome

    def _notify(self) -> None:
        if self.runtime.relay is not None:
            self.runtime.relay.notify()

    def spawn(self) -> None:
        bus, stop = self.runtime.bus, self.runtime.stop
        self.runtime.spawn(
            bus.consume(
                durable=SETTLEMENT_CONSUMER,
                subject=TASKS_COMPLETED,
                handler=self.on_task_completed,
                stop=stop,
                concurrency=8,
            )
        )
        self.runtime.spawn(
            bus.consume(
                durable=RUN_REFUND_CONSUMER, subject=RUNS_COMPLETED, handler=self.on_run_completed, stop=stop
            )
        )
