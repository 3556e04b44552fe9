"""PostgreSQL connections dropped mid-stream; duplicate and out-of-order events delivered afterwards."""

from __future__ import annotations

import asyncio
import random
import threading
import time
import uuid
from decimal import Decimal

import nats
import pytest
from nats.js.api import ConsumerConfig, DeliverPolicy

from tests.e2e.stack import Stack
from tests.faults.workload import (
    FULL,
    RECHARGE_CREDITS,
    check_money,
    drop_connections,
    make_users,
    request,
    settle,
    stream,
)

pytestmark = pytest.mark.slow


def test_dropped_database_connections_mid_stream(stack: Stack) -> None:
    users = make_users(stack, 3)
    drops = 6 if FULL else 3
    terminated: list[int] = []

    def dropper() -> None:
        for _ in range(drops):
            time.sleep(random.uniform(1.0, 3.0))
            terminated.append(drop_connections(stack))

    faults = threading.Thread(target=dropper)
    faults.start()
    stream(users, 4.0 * drops, while_alive=faults)
    faults.join()
    assert sum(terminated) > 0
    settle(users, stack=stack)
    counts = check_money(stack, users)
    assert counts["succeeded"] > 0, counts
    assert counts["runs"] > 0, counts


async def _replay_events(stack: Stack, copies: int) -> int:
    """Every tasks.*, runs.* and payments.* event of this stack's namespace, published again `copies`
    times with fresh Nats-Msg-Ids (so JetStream does not drop them), newest first and shuffled."""
    namespace = stack.env["ATELIER_NAMESPACE"]
    client = await nats.connect(stack.env["ATELIER_NATS_URL"])
    try:
        js = client.jetstream()
        stream_name = f"{namespace.upper().replace('.', '_')}_EVENTS"
        info = await js.stream_info(stream_name)
        subscription = await js.pull_subscribe(
            f"{namespace}.>",
            durable=None,
            stream=stream_name,
            config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL),
        )
        seen: list[tuple[str, bytes, dict[str, str]]] = []  # subject, data, headers
        while len(seen) < info.state.messages:
            try:
                batch = await subscription.fetch(100, timeout=2)
            except nats.errors.TimeoutError:
                break
            for message in batch:
                await message.ack()
                logical = message.subject.removeprefix(f"{namespace}.")
                if logical.split(".")[0] in ("tasks", "runs", "payments"):
                    seen.append((message.subject, message.data, dict(message.headers or {})))
        await subscription.unsubscribe()
        published = 0
        for _ in range(copies):
            order = list(reversed(seen))
            random.shuffle(order)
            for subject, data, headers in order:
                headers["Nats-Msg-Id"] = f"replay-{uuid.uuid4()}"
                await js.publish(subject, data, headers=headers)
                published += 1
        return published
    finally:
        await client.close()


def test_duplicate_and_out_of_order_events_change_nothing(stack: Stack) -> None:
    users = make_users(stack, 2)
    stream(users, 6.0)
    settle(users, stack=stack)
    check_money(stack, users)
    before = {
        task_id: request(user.http, "GET", f"/v1/tasks/{task_id}").json()["status"]
        for user in users
        for task_id in user.tasks
    }
    runs_before = {
        run_id: request(user.http, "GET", f"/v1/workflow-runs/{run_id}").json()["status"]
        for user in users
        for run_id in user.runs
    }
    published = asyncio.run(_replay_events(stack, 3 if FULL else 2))
    assert published > 20
    time.sleep(6)  # let every consumer chew through the copies
    settle(users, stack=stack)
    for user in users:
        for task_id in user.tasks:
            assert request(user.http, "GET", f"/v1/tasks/{task_id}").json()["status"] == before[task_id]
        for run_id in user.runs:
            assert (
                request(user.http, "GET", f"/v1/workflow-runs/{run_id}").json()["status"]
                == runs_before[run_id]
            )
        # Replayed payments credit nothing twice.
        records = request(user.http, "GET", "/v1/billing/records", params={"type": "recharge"}).json()[
            "items"
        ]
        assert sum(Decimal(r["delta"]) for r in records) == RECHARGE_CREDITS
    check_money(stack, users)
