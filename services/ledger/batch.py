"""Group commit: concurrent hold and capture requests share one transaction and one commit.

A request brings an *attempt*: the happy path of its transfer (`Ledger.hold_fast`, `capture_fast`),
which either writes everything or returns None having written nothing. Queued attempts run one after
the other, in arrival order, on one session; one commit ends the batch. While a batch commits, new
requests queue for the next one, so the batch grows with the load and costs nothing when idle.

Guarantees are those of each attempt: its wallet lock, its checks and its writes are the same as
alone, only the commit is shared. One batch runs at a time, so requests keep their arrival order
(a capture never overtakes the hold it was sent after). When anything goes wrong in a batch — an
attempt raises, the commit fails — the whole batch rolls back and every request in it is answered
None: its edge then takes the general path in a transaction of its own, where it succeeds, replays
(if the commit did land after all) or gets its own error, unaffected by its neighbours.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from opentelemetry import context as otel_context
from sqlalchemy.ext.asyncio import AsyncSession

from kit.db import Database

log = logging.getLogger(__name__)

T = TypeVar("T")
Attempt = Callable[[AsyncSession], Awaitable[T | None]]


def _future() -> asyncio.Future[T | None]:
    return asyncio.get_running_loop().create_future()


@dataclass
class _Queued(Generic[T]):
    attempt: Attempt[T]
    # The requester's trace: statements, stored trace ids and outbox headers stay on its trace.
    trace: otel_context.Context
    answer: asyncio.Future[T | None] = field(default_factory=_future)


class GroupCommit(Generic[T]):
    def __init__(
        self,
        db: Database,
        *,
        max_batch: int = 64,
        after_commit: Callable[[], None] | None = None,
    ) -> None:
        self.db = db
        self.max_batch = max_batch
        self.after_commit = after_commit
        self._queue: list[_Queued[T]] = []
        self._runner: asyncio.Task[None] | None = None

    async def run(self, attempt: Attempt[T]) -> T | None:
        """The attempt's result once committed; None when it, or its batch, did not go through."""
        queued = _Queued(attempt, otel_context.get_current())
        self._queue.append(queued)
        if self._runner is None or self._runner.done():
            self._runner = asyncio.create_task(self._drain())
        return await queued.answer

    async def _drain(self) -> None:
        while self._queue:
            batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch :]
            results: list[T | None] = [None] * len(batch)
            try:
                results = await self._commit(batch)
            except Exception:
                log.warning("a batch of %d transfers rolled back; each goes alone", len(batch), exc_info=True)
            finally:  # cancelled too: nobody is left waiting
                for queued, result in zip(batch, results, strict=True):
                    if not queued.answer.done():
                        queued.answer.set_result(result)

    async def _commit(self, batch: list[_Queued[T]]) -> list[T | None]:
        results: list[T | None] = []
        async with self.db.transaction() as session:
            for queued in batch:
                token = otel_context.attach(queued.trace)
                try:
                    results.append(await queued.attempt(session))
                finally:
                    otel_context.detach(token)
        if self.after_commit is not None:
            self.after_commit()
        return results
