"""Background loops of the ledger process: voiding expired holds and expiring unpaid orders."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime

from kit.service import Runtime
from services.ledger import service as svc
from services.ledger.service import Ledger

log = logging.getLogger(__name__)


async def expire_due_holds(
    runtime: Runtime, ledger: Ledger, *, now: datetime, limit: int = 100
) -> list[svc.Transfer]:
    """Voids holds past their expiry, one transaction per hold (see `Ledger.expire_hold`)."""
    async with runtime.db.transaction() as session:
        due = await ledger.due_holds(session, now=now, limit=limit)
    expired = []
    for hold_id in due:
        async with runtime.db.transaction() as session:
            hold = await ledger.expire_hold(session, hold_id, now=now)
        if hold is not None:
            expired.append(hold)
    if expired and runtime.relay is not None:
        runtime.relay.notify()
    return expired


async def sweep(runtime: Runtime, ledger: Ledger, *, interval: float) -> None:
    """Until `runtime.stop`: void expired holds and expire unpaid recharge orders every `interval` s."""
    while not runtime.stop.is_set():
        try:
            now = datetime.now(UTC)
            while len(await expire_due_holds(runtime, ledger, now=now, limit=100)) == 100:
                pass
            async with runtime.db.transaction() as session:
                await ledger.expire_orders(session, before=now, limit=100)
        except Exception as exc:  # a database blip must not kill the loop
            log.warning("ledger sweeper error: %r", exc)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(runtime.stop.wait(), timeout=interval)
