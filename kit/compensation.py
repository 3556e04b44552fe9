"""One rule for money moved before the row that owns it is recorded.

A task or a message holds its price in the ledger, and a workflow run is debited, *before* the row that
owns the hold or debit commits: the ledger must say yes first. Anything may fail in between (a
constraint, text PostgreSQL cannot store, a dropped connection, the caller going away), and a hold that
nobody owns would keep the user's credits until it expires. Every such path records its owner inside
`owned_or_undone`: when the block raises anything, the effect is undone at once with its own
idempotent id, unless the owner was recorded after all (a commit can succeed and its answer still be
lost), and the error goes on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

log = logging.getLogger(__name__)
# Undos still running after their caller was cancelled again (the loop keeps only weak references).
_running: set[asyncio.Task[None]] = set()


@asynccontextmanager
async def owned_or_undone(
    what: str, *, owned: Callable[[], Awaitable[bool]], undo: Callable[[], Awaitable[object]]
) -> AsyncIterator[None]:
    """Wrap the steps that record the owner of `what`; on any exception `undo()` it unless `owned()`.

    `owned()` failing counts as owned: the effect stays for a retry to adopt or for its expiry, rather
    than being undone under a row that may exist. `undo()` must be idempotent; its failure is logged
    and never hides the original error. Cancellation of the caller does not stop the undo.
    """
    try:
        yield
    except BaseException:
        task = asyncio.ensure_future(_undo_unless_owned(what, owned, undo))
        _running.add(task)
        task.add_done_callback(_running.discard)
        await asyncio.shield(task)
        raise


async def _undo_unless_owned(
    what: str, owned: Callable[[], Awaitable[bool]], undo: Callable[[], Awaitable[object]]
) -> None:
    try:
        if await owned():
            return
    except Exception:
        log.warning("could not tell whether %s has an owner; keeping it", what, exc_info=True)
        return
    try:
        await undo()
    except Exception:
        log.warning("could not undo %s; it stays until it expires or is recovered", what, exc_info=True)
    else:
        log.info("undid %s: its owner was not recorded", what)
