"""Live updates reach the owner's open streams, and no one else's, within a second."""

from __future__ import annotations

import asyncio
import uuid

from atelier.common.v1 import common_pb2
from atelier.events.v1 import events_pb2
from gateway.live import LiveHub
from kit.bus import Bus


async def test_a_balance_change_reaches_only_its_owner(bus: Bus) -> None:
    hub = LiveHub()
    await hub.start(bus)
    alice, bob = str(uuid.uuid4()), str(uuid.uuid4())
    try:
        async with hub.stream(alice) as alice_stream, hub.stream(bob) as bob_stream:
            event = events_pb2.BalanceChanged(
                user_id=alice,
                available=common_pb2.Credits(milli=330_000),
                held=common_pb2.Credits(milli=500),
                version=3,
            )
            await bus.publish("balances.changed", event.SerializeToString(), msg_id=str(uuid.uuid4()))
            received = await asyncio.wait_for(alice_stream.get(), timeout=1.0)
            assert received.name == "balance"
            assert received.data["available"] == "330"
            assert received.data["held"] == "0.5"
            assert "event: balance" in received.sse()
            await asyncio.sleep(0.2)
            assert bob_stream.empty()
    finally:
        await hub.stop()


async def test_internal_workflow_tasks_are_not_streamed(bus: Bus) -> None:
    hub = LiveHub()
    await hub.start(bus)
    user = str(uuid.uuid4())
    try:
        async with hub.stream(user) as stream:
            internal = events_pb2.TaskCompleted(task_id="t1", user_id=user, internal=True)
            public = events_pb2.TaskCompleted(task_id="t2", user_id=user)
            for event in (internal, public):
                await bus.publish("tasks.completed", event.SerializeToString(), msg_id=str(uuid.uuid4()))
            received = await asyncio.wait_for(stream.get(), timeout=1.0)
            assert received.data["task_id"] == "t2"
    finally:
        await hub.stop()
