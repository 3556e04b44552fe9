"""kit.cached_snapshot: a missed event is covered by the periodic refresh, and a failed refresh keeps the
previous snapshot."""

from __future__ import annotations

import asyncio

import pytest

from kit.cached_snapshot import CachedSnapshot


async def test_periodic_refresh_without_events_and_failures_keep_the_last_value() -> None:
    source = {"value": 1, "fail": False}

    async def fetch(current: int | None) -> int:
        if source["fail"]:
            raise ConnectionError("owner down")
        return source["value"]

    cache: CachedSnapshot[int] = CachedSnapshot(
        fetch, bus=None, subject="x.changed", interval=0.05, retry_delay=0.01
    )
    with pytest.raises(RuntimeError):
        cache.get()
    assert await cache.start() == 1
    stop = asyncio.Event()
    task = asyncio.create_task(cache.run(stop))
    source["value"] = 2
    for _ in range(100):
        if cache.get() == 2:
            break
        await asyncio.sleep(0.01)
    assert cache.get() == 2

    source["fail"] = True
    source["value"] = 3
    await asyncio.sleep(0.15)
    assert cache.get() == 2  # the owner is down: readers keep the last good snapshot
    source["fail"] = False
    for _ in range(100):
        if cache.get() == 3:
            break
        await asyncio.sleep(0.01)
    assert cache.get() == 3
    stop.set()
    await asyncio.wait_for(task, timeout=1)


async def test_invalidate_refreshes_at_once() -> None:
    calls = 0

    async def fetch(current: int | None) -> int:
        nonlocal calls
        calls += 1
        return calls

    cache: CachedSnapshot[int] = CachedSnapshot(fetch, bus=None, subject="x.changed", interval=60)
    await cache.start()
    stop = asyncio.Event()
    task = asyncio.create_task(cache.run(stop))
    cache.invalidate()
    for _ in range(100):
        if cache.get() == 2:
            break
        await asyncio.sleep(0.01)
    assert cache.get() == 2
    stop.set()
    await asyncio.wait_for(task, timeout=1)
