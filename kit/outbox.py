"""Transactional outbox: an event is written in the same transaction as the state change it announces,
and a relay publishes it to JetStream after commit.

The relay locks rows with `FOR UPDATE SKIP LOCKED`, so several replicas share the work without
publishing a row twice concurrently; a crash between publish and commit republishes the row with
the same `Nats-Msg-Id`, which JetStream de-duplicates (and consumers are idempotent anyway).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from google.protobuf.message import Message
from opentelemetry import propagate
from opentelemetry.context import Context
from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Identity,
    Index,
    LargeBinary,
    MetaData,
    Table,
    Text,
    Uuid,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession

from kit import metrics
from kit.bus import Bus
from kit.db import Database

log = logging.getLogger(__name__)


def outbox_table(metadata: MetaData) -> Table:
    return Table(
        "outbox",
        metadata,
        Column("id", Uuid, primary_key=True),
        Column("seq", BigInteger, Identity(), nullable=False, unique=True),
        Column("subject", Text, nullable=False),
        Column("payload", LargeBinary, nullable=False),
        Column("headers", JSONB, nullable=False, server_default="{}"),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Column("published_at", DateTime(timezone=True)),
        Index("ix_outbox_unpublished", "seq", postgresql_where=Column("published_at").is_(None)),
    )


class Outbox:
    """Writes events into a service's outbox table (inside the caller's transaction)."""

    def __init__(self, table: Table) -> None:
        self.table = table

    async def add(
        self,
        session: AsyncSession,
        subject: str,
        message: Message | bytes,
        *,
        event_id: uuid.UUID | None = None,
    ) -> uuid.UUID:
        event_id = event_id or uuid.uuid4()
        headers: dict[str, str] = {}
        propagate.inject(headers)  # the trace of the request that caused the change travels on
        payload = message if isinstance(message, bytes) else message.SerializeToString()
        await session.execute(
            insert(self.table).values(id=event_id, subject=subject, payload=payload, headers=headers)
        )
        return event_id

    async def add_many(self, session: AsyncSession, events: Sequence[OutboxEvent]) -> None:
        """Several events in one statement (a batch of requests, each keeping its own trace)."""
        rows = []
        for event in events:
            headers: dict[str, str] = {}
            propagate.inject(headers, context=event.trace)
            payload = event.message if isinstance(event.message, bytes) else event.message.SerializeToString()
            rows.append(
                {"id": event.event_id, "subject": event.subject, "payload": payload, "headers": headers}
            )
        if rows:
            await session.execute(insert(self.table), rows)


@dataclass(frozen=True)
class OutboxEvent:
    """An event for `Outbox.add_many`; `trace` is the context of the request that caused it."""

    subject: str
    message: Message | bytes
    event_id: uuid.UUID
    trace: Context | None = None


class OutboxRelay:
    def __init__(
        self,
        table: Table,
        db: Database,
        bus: Bus,
        *,
        service: str,
        batch_size: int = 200,
        idle_interval: float = 0.1,
        retention: timedelta = timedelta(days=2),
    ) -> None:
        self.table = table
        self.db = db
        self.bus = bus
        self.service = service
        self.batch_size = batch_size
        self.idle_interval = idle_interval
        self.retention = retention
        self._wake = asyncio.Event()

    def notify(self) -> None:
        """Tell the relay that a transaction just committed outbox rows (skips the idle wait)."""
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        cleaned_at = datetime.now(UTC)
        while not stop.is_set():
            try:
                published = await self.publish_batch()
            except Exception as exc:
                log.warning("outbox relay error: %r", exc)
                published = 0
                await asyncio.sleep(1.0)
            if published:
                continue
            if datetime.now(UTC) - cleaned_at > timedelta(minutes=10):
                await self._cleanup()
                cleaned_at = datetime.now(UTC)
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self.idle_interval)
            except TimeoutError:
                pass

    async def publish_batch(self) -> int:
        t = self.table
        async with self.db.transaction() as session:
            rows = (
                await session.execute(
                    select(t.c.id, t.c.subject, t.c.payload, t.c.headers, t.c.created_at)
                    .where(t.c.published_at.is_(None))
                    .order_by(t.c.seq)
                    .limit(self.batch_size)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            if not rows:
                return 0
            now = datetime.now(UTC)
            for row in rows:
                await self.bus.publish(row.subject, row.payload, msg_id=str(row.id), headers=row.headers)
                metrics.OUTBOX_LAG.labels(self.service).observe(
                    max(0.0, (now - row.created_at).total_seconds())
                )
            await session.execute(
                update(t).where(t.c.id.in_([row.id for row in rows])).values(published_at=func.now())
            )
        metrics.OUTBOX_PUBLISHED.labels(self.service).inc(len(rows))
        return len(rows)

    async def _cleanup(self) -> None:
        t = self.table
        async with self.db.transaction() as session:
            await session.execute(delete(t).where(t.c.published_at < datetime.now(UTC) - self.retention))
            pending = (
                await session.execute(select(func.count()).select_from(t).where(t.c.published_at.is_(None)))
            ).scalar_one()
        metrics.OUTBOX_PENDING.labels(self.service).set(pending)
