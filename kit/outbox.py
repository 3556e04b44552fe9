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
from typing import Any

import psycopg
from google.protobuf.message import Message
from opentelemetry import propagate
from opentelemetry.context import Context
from psycopg import sql
from psycopg.types.json import Jsonb
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
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession

from kit import metrics
from kit.bus import Bus, Publication
from kit.db import Database, OwnConnection

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
        self._insert: sql.Composed | None = None

    async def add(
        self,
        session: AsyncSession,
        subject: str,
        message: Message | bytes,
        *,
        event_id: uuid.UUID | None = None,
    ) -> uuid.UUID:
        event_id = event_id or uuid.uuid4()
        await session.execute(insert(self.table).values(_row(OutboxEvent(subject, message, event_id))))
        return event_id

    async def add_many(self, session: AsyncSession, events: Sequence[OutboxEvent]) -> None:
        """Several events in one statement (a batch of requests, each keeping its own trace)."""
        rows = [_row(event) for event in events]
        if rows:
            await session.execute(insert(self.table), rows)

    async def add_many_on(
        self, connection: psycopg.AsyncConnection[Any], events: Sequence[OutboxEvent]
    ) -> None:
        """`add_many` on a plain psycopg connection, in its open transaction, as one statement;
        queued without a round trip of its own when the connection is in pipeline mode."""
        if not events:
            return
        if self._insert is None:
            self._insert = sql.SQL(
                "INSERT INTO {} (id, subject, payload, headers)"
                " SELECT * FROM unnest(%s::uuid[], %s::text[], %s::bytea[], %s::jsonb[])"
            ).format(_identifier(self.table))
        rows = [_row(event) for event in events]
        columns = (
            [row["id"] for row in rows],
            [row["subject"] for row in rows],
            [row["payload"] for row in rows],
            [Jsonb(row["headers"]) for row in rows],
        )
        await connection.execute(self._insert, columns)


def _identifier(table: Table) -> sql.Identifier:
    return sql.Identifier(*filter(None, (table.schema, table.name)))


def _row(event: OutboxEvent) -> dict[str, Any]:
    headers: dict[str, str] = {}
    propagate.inject(headers, context=event.trace)  # the trace of the request that caused the change
    payload = event.message if isinstance(event.message, bytes) else event.message.SerializeToString()
    return {"id": event.event_id, "subject": event.subject, "payload": payload, "headers": headers}


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
        linger: float = 0.01,
        retention: timedelta = timedelta(days=2),
    ) -> None:
        self.table = table
        self.db = db
        self.bus = bus
        self.service = service
        self.batch_size = batch_size
        self.idle_interval = idle_interval
        self.linger = linger
        self.retention = retention
        self._wake = asyncio.Event()
        self._connection = OwnConnection(db.connect)
        name = _identifier(table)
        self._select = sql.SQL(
            "SELECT id, subject, payload, headers, created_at FROM {} WHERE published_at IS NULL"
            " ORDER BY seq LIMIT %s FOR UPDATE SKIP LOCKED"
        ).format(name)
        self._mark = sql.SQL("UPDATE {} SET published_at = now() WHERE id = ANY(%s)").format(name)

    def notify(self) -> None:
        """Tell the relay that a transaction just committed outbox rows (skips the idle wait)."""
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Publishes until `stop`: at once when notified, then, while events keep coming, at most once
        per `linger` so that one round trip carries many of them."""
        cleaned_at = datetime.now(UTC)
        while not stop.is_set():
            self._wake.clear()  # a commit from now on wakes the next round
            try:
                published = await self.publish_batch()
            except Exception as exc:
                log.warning("outbox relay error: %r", exc)
                published = 0
                await asyncio.sleep(1.0)
            if published >= self.batch_size:
                continue
            if published:
                await asyncio.sleep(self.linger)
                continue
            if datetime.now(UTC) - cleaned_at > timedelta(minutes=10):
                await self._cleanup()
                cleaned_at = datetime.now(UTC)
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self.idle_interval)
            except TimeoutError:
                pass
        await self.close()

    async def publish_batch(self) -> int:
        """Publishes up to `batch_size` unpublished rows, oldest first, and marks them published: two
        round trips to PostgreSQL and one to NATS for the lot. The mark is committed without waiting
        for its flush to disk: a mark lost in a crash only means the rows go out again under the same
        `Nats-Msg-Id`, which JetStream drops (and consumers are idempotent anyway)."""
        async with self._connection.transaction() as connection:
            rows = await (await connection.execute(self._select, (self.batch_size,))).fetchall()
            if not rows:
                return 0
            now = datetime.now(UTC)
            await self.bus.publish_many([Publication(row[1], row[2], str(row[0]), row[3]) for row in rows])
            for row in rows:
                metrics.OUTBOX_LAG.labels(self.service).observe(max(0.0, (now - row[4]).total_seconds()))
            await connection.execute("SET LOCAL synchronous_commit = off")
            await connection.execute(self._mark, ([row[0] for row in rows],))
        metrics.OUTBOX_PUBLISHED.labels(self.service).inc(len(rows))
        return len(rows)

    async def close(self) -> None:
        await self._connection.close()

    async def _cleanup(self) -> None:
        t = self.table
        async with self.db.transaction() as session:
            await session.execute(delete(t).where(t.c.published_at < datetime.now(UTC) - self.retention))
            pending = (
                await session.execute(select(func.count()).select_from(t).where(t.c.published_at.is_(None)))
            ).scalar_one()
        metrics.OUTBOX_PENDING.labels(self.service).set(pending)
