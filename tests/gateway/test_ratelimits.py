"""Rate limits: GCRA's arithmetic, and limits that hold across gateway replicas sharing one NATS."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.ratelimits import Limit, Limiter, MemoryStore
from kit.bus import Bus
from tests.infra import Infra


def test_a_burst_then_one_per_interval() -> None:
    store, limit = MemoryStore(), Limit(burst=2, interval=10)
    assert store.take("a", limit, now=0) == 0
    assert store.take("a", limit, now=0) == 0
    assert store.take("a", limit, now=0) == pytest.approx(10)
    assert store.take("a", limit, now=5) == pytest.approx(5)
    assert store.take("a", limit, now=10.1) == 0
    assert store.take("b", limit, now=0) == 0


@given(
    burst=st.integers(1, 20),
    interval=st.floats(0.01, 10),
    gaps=st.lists(st.floats(0, 5), min_size=1, max_size=200),
)
def test_no_window_admits_more_than_the_burst_and_its_refill(
    burst: int, interval: float, gaps: list[float]
) -> None:
    store, limit = MemoryStore(), Limit(burst, interval)
    now, admitted = 0.0, []
    for gap in gaps:
        now += gap
        if store.take("k", limit, now) == 0:
            admitted.append(now)
    for i, start in enumerate(admitted):
        for j in range(i, len(admitted)):
            assert j - i + 1 <= burst + (admitted[j] - start) / interval + 1e-6


async def _replica(infra: Infra, namespace: str, limit: Limit) -> tuple[Bus, Limiter]:
    bus = await Bus.connect(infra.nats_url, namespace=namespace, name="test-gateway")
    limiter = Limiter("login-ip", limit)
    await limiter.attach(bus)
    return bus, limiter


@pytest.fixture
async def namespace(infra: Infra) -> AsyncIterator[str]:
    name = f"rl{uuid.uuid4().hex[:8]}"
    yield name
    bus = await Bus.connect(infra.nats_url, namespace=name, name="test-cleanup")
    await bus.delete_streams()
    await bus.close()


async def test_two_replicas_admit_the_burst_once_between_them(infra: Infra, namespace: str) -> None:
    limit = Limit(burst=10, interval=60)
    (bus_a, a), (bus_b, b) = [await _replica(infra, namespace, limit) for _ in range(2)]
    try:
        # 40 attempts at once from one address, spread over both replicas.
        waits = await asyncio.gather(*((a if n % 2 else b).take("203.0.113.7") for n in range(40)))
        assert sum(wait == 0 for wait in waits) == 10
        assert all(0 < wait <= 60 * 30 for wait in waits if wait)
        assert await a.take("198.51.100.1") == 0  # another address has its own
        await b.reset("203.0.113.7")  # a success on one replica clears the key for both
        assert await a.take("203.0.113.7") == 0
    finally:
        await bus_a.close()
        await bus_b.close()


async def test_without_nats_a_replica_limits_on_its_own(infra: Infra, namespace: str) -> None:
    bus, limiter = await _replica(infra, namespace, Limit(burst=2, interval=60))
    await bus.close()  # NATS is gone for this replica
    assert [await limiter.take("203.0.113.9") == 0 for _ in range(3)] == [True, True, False]
