"""Group commit: concurrent hold and capture requests share one transaction, two round trips and one
commit.

A request brings a step: the happy path of its transfer (`Ledger.hold_step`, `capture_step`), which
either writes everything or nothing. Queued steps go to `Ledger.apply_fast` together, in arrival
order, on a connection of the batch's own in pipeline mode: the steps' calls go out in one round
trip, their events and the commit in a second. While a batch commits, new requests queue for the
next one, so the batch grows with the load and costs nothing when idle.

Guarantees are those of each step: its wallet lock, its checks and its writes are the same as alone,
only the round trips and the commit are shared. One batch runs at a time, so requests keep their
arrival order (a capture never overtakes the hold it was sent after). When anything goes wrong in a
batch — a statement fails, the commit fails, the connection drops — the whole batch rolls back and
every request in it is answered None: its edge then takes the general path in a transaction of its
own, where it succeeds, replays (if the commit did land after all) or gets its own error, unaffected
by its neighbours.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import psycopg
from opentelemetry import context as otel_context
from opentelemetry import trace

from kit.db import OwnConnection
from services.ledger import metrics

log = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)

Step = TypeVar("Step")
Result = TypeVar("Result")
Connection = psycopg.AsyncConnection[Any]
# Applies steps in order in the connection's open transaction (pipeline mode): one result each, None
# where nothing was written.
Apply = Callable[[Connection, Sequence[Step]], Awaitable[Sequence[Result | None]]]


def _future() -> asyncio.Future[Result | None]:
    return asyncio.get_running_loop().create_future()


@dataclass
class _Queued(Generic[Step, Result]):
    step: Step
    trace: otel_context.Context = field(default_factory=otel_context.get_current)
    answer: asyncio.Future[Result | None] = field(default_factory=_future)


def _answer(batch: Sequence[_Queued[Step, Result]], results: Sequence[Result | None]) -> None:
    for queued, result in zip(batch, results, strict=True):
        if not queued.answer.done():  # its requester may have been cancelled
            queued.answer.set_result(result)


class GroupCommit(Generic[Step, Result]):
    def __init__(
        self,
        connect: Callable[[], Awaitable[Connection]],
        apply: Apply[Step, Result],
        *,
        max_batch: int = 128,
        after_commit: Callable[[Sequence[Result | None]], None] | None = None,
    ) -> None:
        self.connect = connect
        self.apply = apply
        self.max_batch = max_batch
        self.after_commit = after_commit
        self._queue: list[_Queued[Step, Result]] = []
        self._runner: asyncio.Task[None] | None = None
        self._connection = OwnConnection(connect)

    async def run(self, step: Step) -> Result | None:
        """The step's result once committed; None when it, or its batch, did not go through."""
        queued: _Queued[Step, Result] = _Queued(step)
        self._queue.append(queued)
        if self._runner is None or self._runner.done():
            self._runner = asyncio.create_task(self._drain())
        return await queued.answer

    async def close(self) -> None:
        if self._runner is not None:
            self._runner.cancel()
        await self._connection.close()

    async def _drain(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch :]
                results: Sequence[Result | None] = [None] * len(batch)
                try:
                    results = await self._commit(batch)
                except Exception:
                    metrics.BATCH_ROLLBACKS.inc()
                    log.warning(
                        "a batch of %d transfers rolled back; each goes alone", len(batch), exc_info=True
                    )
                finally:  # cancelled too: nobody in the batch is left waiting
                    _answer(batch, results)
        finally:  # cancelled (shutdown): whoever is still queued takes the general path
            queued, self._queue = self._queue, []
            _answer(queued, [None] * len(queued))

    async def _commit(self, batch: Sequence[_Queued[Step, Result]]) -> Sequence[Result | None]:
        # Traced under its first request (not whichever request started the runner), linked to the rest.
        links = [trace.Link(trace.get_current_span(q.trace).get_span_context()) for q in batch[1:]]
        with tracer.start_as_current_span(
            "ledger batch",
            context=batch[0].trace,
            kind=trace.SpanKind.CLIENT,
            links=links,
            attributes={"db.system": "postgresql", "db.operation.batch.size": len(batch)},
        ):
            async with self._connection.transaction() as connection:
                results = await self.apply(connection, [queued.step for queued in batch])
        metrics.BATCH_SIZE.observe(len(batch))
        if self.after_commit is not None:
            self.after_commit(results)
        return results
