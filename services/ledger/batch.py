"""Group commit: concurrent hold and capture requests share one transaction, one round trip and one
commit.

A request brings a step: the happy path of its transfer (`Ledger.hold_step`, `capture_step`), which
either writes everything or nothing. Queued steps go to `Ledger.apply_fast` together, in arrival
order, on one connection; one commit ends the batch. While a batch commits, new requests queue for
the next one, so the batch grows with the load and costs nothing when idle.

Guarantees are those of each step: its wallet lock, its checks and its writes are the same as alone,
only the round trip and the commit are shared. One batch runs at a time, so requests keep their
arrival order (a capture never overtakes the hold it was sent after). When anything goes wrong in a
batch — a statement fails, the commit fails — the whole batch rolls back and every request in it is
answered None: its edge then takes the general path in a transaction of its own, where it succeeds,
replays (if the commit did land after all) or gets its own error, unaffected by its neighbours.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from kit.db import Database

log = logging.getLogger(__name__)

Step = TypeVar("Step")
Result = TypeVar("Result")
# Applies steps in order in the session's transaction: one result each, None where nothing was written.
Apply = Callable[[AsyncSession, Sequence[Step]], Awaitable[Sequence[Result | None]]]


def _future() -> asyncio.Future[Result | None]:
    return asyncio.get_running_loop().create_future()


@dataclass
class _Queued(Generic[Step, Result]):
    step: Step
    answer: asyncio.Future[Result | None] = field(default_factory=_future)


def _answer(batch: Sequence[_Queued[Step, Result]], results: Sequence[Result | None]) -> None:
    for queued, result in zip(batch, results, strict=True):
        if not queued.answer.done():  # its requester may have been cancelled
            queued.answer.set_result(result)


class GroupCommit(Generic[Step, Result]):
    def __init__(
        self,
        db: Database,
        apply: Apply[Step, Result],
        *,
        max_batch: int = 128,
        after_commit: Callable[[], None] | None = None,
    ) -> None:
        self.db = db
        self.apply = apply
        self.max_batch = max_batch
        self.after_commit = after_commit
        self._queue: list[_Queued[Step, Result]] = []
        self._runner: asyncio.Task[None] | None = None

    async def run(self, step: Step) -> Result | None:
        """The step's result once committed; None when it, or its batch, did not go through."""
        queued: _Queued[Step, Result] = _Queued(step)
        self._queue.append(queued)
        if self._runner is None or self._runner.done():
            self._runner = asyncio.create_task(self._drain())
        return await queued.answer

    async def _drain(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch :]
                results: Sequence[Result | None] = [None] * len(batch)
                try:
                    results = await self._commit([queued.step for queued in batch])
                except Exception:
                    log.warning(
                        "a batch of %d transfers rolled back; each goes alone", len(batch), exc_info=True
                    )
                finally:  # cancelled too: nobody in the batch is left waiting
                    _answer(batch, results)
        finally:  # cancelled (shutdown): whoever is still queued takes the general path
            queued, self._queue = self._queue, []
            _answer(queued, [None] * len(queued))

    async def _commit(self, steps: list[Step]) -> Sequence[Result | None]:
        async with self.db.transaction() as session:
            results = await self.apply(session, steps)
        if self.after_commit is not None:
            self.after_commit()
        return results
