"""Idempotent consumers: remember each handled event id in the same transaction as its effects."""

from __future__ import annotations

from sqlalchemy import Column, DateTime, MetaData, Table, Text, func
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession


def inbox_table(metadata: MetaData) -> Table:
    return Table(
        "inbox",
        metadata,
        Column("consumer", Text, primary_key=True),
        Column("event_id", Text, primary_key=True),
        Column("handled_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    )


class Inbox:
    def __init__(self, table: Table) -> None:
        self.table = table

    async def claim(self, session: AsyncSession, consumer: str, event_id: str) -> bool:
        """True the first time `consumer` sees `event_id`; False for a duplicate delivery.

        Call it inside the handler's transaction: if the handler rolls back, the claim does too, and a
        concurrent duplicate waits on the primary key until the first one commits or rolls back.
        """
        if not event_id:
            raise ValueError("an event without an id cannot be handled idempotently")
        result = await session.execute(
            insert(self.table)
            .values(consumer=consumer, event_id=event_id)
            .on_conflict_do_nothing()
            .returning(self.table.c.event_id)
        )
        return result.first() is not None
