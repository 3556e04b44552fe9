"""Live updates for `GET /v1/events` (server-sent events).

Every gateway replica subscribes (core NATS, no durable state) to the events that concern a person —
balance changes, task and run progress, completed recharges — and fans each one out to that user's
open streams only. A stream that falls behind loses its oldest updates, never another user's data.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from atelier.events.v1 import events_pb2
from kit.bus import Bus
from kit.money import Credits

log = logging.getLogger(__name__)

# subject → (SSE event name, message type)
EVENTS: dict[str, tuple[str, type[Message]]] = {
    "balances.changed": ("balance", events_pb2.BalanceChanged),
    "tasks.progress": ("task", events_pb2.TaskProgress),
    "tasks.completed": ("task", events_pb2.TaskCompleted),
    "runs.started": ("run", events_pb2.RunStarted),
    "runs.progress": ("run", events_pb2.RunProgress),
    "runs.completed": ("run", events_pb2.RunCompleted),
    "payments.completed": ("recharge", events_pb2.RechargeCompleted),
}
QUEUE_SIZE = 256


@dataclass(frozen=True)
class LiveEvent:
    name: str
    data: dict[str, Any]

    def sse(self) -> str:
        return f"event: {self.name}\ndata: {json.dumps(self.data, ensure_ascii=False)}\n\n"


def _public_view(message: Message) -> dict[str, Any]:
    data = MessageToDict(message, preserving_proto_field_name=True)
    data.pop("meta", None)
    for key, value in list(data.items()):
        # Credits travel as decimal strings outside, like everywhere else in the API.
        if isinstance(value, dict) and set(value) <= {"milli"}:
            data[key] = str(Credits(int(value.get("milli", 0))))
    return data


class LiveHub:
    def __init__(self) -> None:
        self._streams: dict[str, set[asyncio.Queue[LiveEvent]]] = defaultdict(set)
        self._subscriptions: list[Subscription] = []

    async def start(self, bus: Bus) -> None:
        for subject, (name, message_type) in EVENTS.items():
            handler = self._handler(name, message_type)
            self._subscriptions.append(await bus.nc.subscribe(bus.subject(subject), cb=handler))

    def _handler(self, name: str, message_type: type[Message]) -> Callable[[Msg], Any]:
        async def on_message(msg: Msg) -> None:
            try:
                message = message_type.FromString(msg.data)
            except Exception:
                log.warning("undecodable %s event dropped", name)
                return
            user_id = getattr(message, "user_id", "")
            if user_id and getattr(message, "internal", False) is False:
                self.publish(user_id, LiveEvent(name, _public_view(message)))

        return on_message

    def publish(self, user_id: str, event: LiveEvent) -> None:
        for queue in self._streams.get(user_id, ()):
            if queue.full():
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
            queue.put_nowait(event)

    @contextlib.asynccontextmanager
    async def stream(self, user_id: str) -> AsyncIterator[asyncio.Queue[LiveEvent]]:
        queue: asyncio.Queue[LiveEvent] = asyncio.Queue(QUEUE_SIZE)
        self._streams[user_id].add(queue)
        try:
            yield queue
        finally:
            self._streams[user_id].discard(queue)
            if not self._streams[user_id]:
                del self._streams[user_id]

    async def stop(self) -> None:
        for subscription in self._subscriptions:
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()
        self._subscriptions.clear()
