"""A read-through cache of a snapshot another service owns, refreshed when that service announces a
change on NATS and, as a fallback for missed events, every `interval` seconds.

Generic: it knows only a fetch coroutine and a subject. For example a catalog reader::

    async def fetch(current: CatalogSnapshot | None) -> CatalogSnapshot:
        known = current.version if current else 0
        reply = await stub.GetCatalog(GetCatalogRequest(known_version=known))
        return current if reply.not_modified and current else reply.catalog

    catalog = CachedSnapshot(fetch, bus=runtime.bus, subject="catalog.changed")
    await catalog.start()          # first fetch; raises when the owner cannot answer
    runtime.spawn(catalog.run(runtime.stop))
    snapshot = catalog.get()

The change event is read with a plain (core NATS) subscription, not a durable consumer: every
replica must see every event, and a missed one is only a delay until the periodic refresh.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

from kit.bus import Bus

log = logging.getLogger(__name__)

T = TypeVar("T")

Fetch = Callable[[T | None], Awaitable[T]]


class CachedSnapshot(Generic[T]):
    def __init__(
        self,
        fetch: Fetch[T],
        *,
        bus: Bus | None,
        subject: str,
        interval: float = 30.0,
        retry_delay: float = 0.5,
        name: str = "snapshot",
    ) -> None:
        self._fetch = fetch
        self._bus = bus
        self._subject = subject
        self.interval = interval
        self.retry_delay = retry_delay
        self.name = name
        self._value: T | None = None
        self._wake = asyncio.Event()
        self._subscription: Any = None
        self.refreshed_at = 0.0
        self.refreshes = 0

    async def start(self) -> T:
        """Subscribes to the change subject, then fetches the first snapshot."""
        if self._bus is not None and self._subscription is None:

            async def on_change(msg: Any) -> None:
                self._wake.set()

            self._subscription = await self._bus.nc.subscribe(self._bus.subject(self._subject), cb=on_change)
        return await self.refresh()

    def get(self) -> T:
        """The snapshot held now; raises before the first successful fetch."""
        if self._value is None:
            raise RuntimeError(f"{self.name} is not loaded yet (call start())")
        return self._value

    @property
    def loaded(self) -> bool:
        return self._value is not None

    async def refresh(self) -> T:
        """Fetches now and keeps the answer."""
        value = await self._fetch(self._value)
        self._value = value
        self.refreshed_at = time.monotonic()
        self.refreshes += 1
        return value

    def invalidate(self) -> None:
        """Asks the running loop to refresh as soon as possible."""
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Refreshes on every change event and every `interval` seconds until `stop` is set."""
        stopping = asyncio.create_task(stop.wait())
        try:
            while not stop.is_set():
                waking = asyncio.create_task(self._wake.wait())
                await asyncio.wait({stopping, waking}, timeout=self.interval, return_when="FIRST_COMPLETED")
                waking.cancel()
                if stop.is_set():
                    break
                # Cleared before fetching: an event that lands during the fetch triggers another one.
                self._wake.clear()
                try:
                    await self.refresh()
                except Exception as exc:
                    log.warning("%s refresh failed, keeping the previous snapshot: %r", self.name, exc)
                    await asyncio.sleep(self.retry_delay)
                    self._wake.set()
        finally:
            stopping.cancel()
            await self.close()

    async def close(self) -> None:
        if self._subscription is not None:
            with contextlib.suppress(Exception):
                await self._subscription.unsubscribe()
            self._subscription = None
