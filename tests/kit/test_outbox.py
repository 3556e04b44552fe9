"""The outbox round trip against real PostgreSQL and NATS JetStream."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
from sqlalchemy import MetaData, create_engine, func, pool, select

from kit import metrics
from kit.bus import Bus, Delivery, Publication
from kit.db import Database, drop_database, ensure_database, sqlalchemy_url, with_database
from kit.inbox import Inbox, inbox_table
from kit.outbox import Outbox, OutboxRelay, outbox_table
from tests.infra import Infra

metadata = MetaData()
OUTBOX = outbox_table(metadata)
INBOX = inbox_table(metadata)


@pytest.fixture
async def db(infra: Infra) -> AsyncIterator[Database]:
    url = with_database(infra.database_server, f"{infra.database_name('outbox')}_{uuid.uuid4().hex[:6]}")
    await ensure_database(url)
    engine = create_engine(sqlalchemy_url(url), poolclass=pool.NullPool)
    metadata.create_all(engine)
    engine.dispose()
    database = Database(url, application_name="atelier-tests")
    yield database
    await database.dispose()
    await drop_database(url)


class CrashingBus:
    """Publishes for real, then 'crashes' the relay after `crash_after` publishes (before its commit)."""

    def __init__(self, bus: Bus, crash_after: int) -> None:
        self.bus = bus
        self.crash_after = crash_after
        self.published = 0

    async def publish_many(self, messages: Sequence[Publication]) -> Any:
        sent = messages[: self.crash_after - self.published]
        self.published += len(sent)
        await self.bus.publish_many(sent)
        if len(sent) < len(messages):
            raise ConnectionError("relay killed mid-batch")


async def write_events(db: Database, subject: str, count: int, per_tx: int = 10) -> set[str]:
    outbox = Outbox(OUTBOX)
    ids: set[str] = set()
    for start in range(0, count, per_tx):
        async with db.transaction() as session:
            for i in range(start, min(count, start + per_tx)):
                ids.add(str(await outbox.add(session, subject, f"event {i}".encode())))
    return ids


async def collect(bus: Bus, subject: str, durable: str, expected: int, stop: asyncio.Event) -> Counter[str]:
    seen: Counter[str] = Counter()

    async def handler(delivery: Delivery) -> None:
        seen[delivery.event_id] += 1

    consumer = asyncio.create_task(bus.consume(durable=durable, subject=subject, handler=handler, stop=stop))
    for _ in range(200):
        if sum(seen.values()) >= expected:
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(1.0)  # any duplicate would arrive in this window
    stop.set()
    await consumer
    return seen


async def test_each_row_reaches_the_consumer_once_across_a_relay_crash(db: Database, bus: Bus) -> None:
    subject = f"tasks.outbox{uuid.uuid4().hex[:6]}"
    ids = await write_events(db, subject, 50)

    crashing = OutboxRelay(OUTBOX, db, CrashingBus(bus, crash_after=17), service="test", batch_size=30)  # type: ignore[arg-type]
    with pytest.raises(ConnectionError):
        await crashing.publish_batch()
    await crashing.close()
    async with db.session() as session:
        unpublished = (
            await session.execute(
                select(func.count()).select_from(OUTBOX).where(OUTBOX.c.published_at.is_(None))
            )
        ).scalar_one()
    assert unpublished == 50  # the crash rolled the batch back: 17 were sent but none marked

    stop = asyncio.Event()
    restarted = OutboxRelay(OUTBOX, db, bus, service="test", batch_size=30)
    relay_task = asyncio.create_task(restarted.run(stop))
    seen = await collect(bus, subject, f"c{uuid.uuid4().hex[:6]}", 50, stop)
    await relay_task

    assert set(seen) == ids
    assert all(count == 1 for count in seen.values()), "a row reached the consumer twice"


async def test_replicas_never_publish_the_same_row_twice(db: Database, bus: Bus) -> None:
    subject = f"tasks.outbox{uuid.uuid4().hex[:6]}"
    ids = await write_events(db, subject, 120)
    published: Counter[str] = Counter()

    class CountingBus:
        async def publish_many(self, messages: Sequence[Publication]) -> Any:
            published.update(message.msg_id for message in messages)
            await asyncio.sleep(0.001)
            return await bus.publish_many(messages)

    relays = [OutboxRelay(OUTBOX, db, CountingBus(), service="test", batch_size=7) for _ in range(3)]  # type: ignore[arg-type]

    async def drain(relay: OutboxRelay) -> None:
        while await relay.publish_batch():
            pass

    await asyncio.gather(*(drain(relay) for relay in relays))
    for relay in relays:
        await relay.close()
    assert set(published) == ids
    assert max(published.values()) == 1


async def test_inbox_claims_an_event_once(db: Database) -> None:
    inbox = Inbox(INBOX)
    async with db.transaction() as session:
        assert await inbox.claim(session, "ledger-settlement", "evt-1")
        assert not await inbox.claim(session, "ledger-settlement", "evt-1")
        assert await inbox.claim(session, "workflow", "evt-1")
    async with db.transaction() as session:
        assert not await inbox.claim(session, "ledger-settlement", "evt-1")


async def test_consumers_report_their_backlog(bus: Bus) -> None:
    subject = f"tasks.backlog{uuid.uuid4().hex[:6]}"
    for n in range(5):
        await bus.publish(subject, b"x", msg_id=f"{subject}-{n}")
    durable = f"c{uuid.uuid4().hex[:6]}"
    stop = asyncio.Event()
    gate = asyncio.Event()

    async def slow(delivery: Delivery) -> None:
        await gate.wait()

    consumer = asyncio.create_task(
        bus.consume(durable=durable, subject=subject, handler=slow, stop=stop, batch=1)
    )
    pending = metrics.QUEUE_PENDING.labels(stream="EVENTS", consumer=durable)
    for _ in range(50):
        if pending._value.get() > 0:
            break
        await asyncio.sleep(0.1)
    assert pending._value.get() == 5  # sampled before the first fetch: nothing delivered yet
    gate.set()
    stop.set()
    await consumer
