"""What every service's `models.py` starts from: its `MetaData` (constraint names by convention) with the
outbox and inbox tables, and the columns that mean the same thing in every service that has them.

    metadata, outbox, inbox = service_tables()

    runs = Table("runs", metadata, text_id(), user_id(), request_hash(), *failure(), *timestamps())

Each call makes new objects: a column belongs to one table, and each service owns its own metadata.
"""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

from sqlalchemy import BigInteger, Column, DateTime, MetaData, Table, Text, func

from kit.db_naming import NAMING_CONVENTION
from kit.inbox import inbox_table
from kit.outbox import outbox_table


class ServiceTables(NamedTuple):
    metadata: MetaData
    outbox: Table
    inbox: Table


def service_tables() -> ServiceTables:
    """A service's own metadata, named by `NAMING_CONVENTION`, holding its outbox and inbox tables."""
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    return ServiceTables(metadata, outbox_table(metadata), inbox_table(metadata))


def timestamp_column(name: str) -> Column[datetime]:
    """A timestamp column that is never null and defaults to the transaction's time in the database."""
    return Column(name, DateTime(timezone=True), nullable=False, server_default=func.now())


def created_at() -> Column[datetime]:
    return timestamp_column("created_at")


def updated_at() -> Column[datetime]:
    return timestamp_column("updated_at")


def timestamps() -> tuple[Column[datetime], Column[datetime]]:
    """`created_at` then `updated_at`."""
    return created_at(), updated_at()


def optional_timestamp(name: str) -> Column[datetime]:
    """A moment that may not have come yet: NULL until it does (an expiry, a start, a revocation)."""
    return Column(name, DateTime(timezone=True), nullable=True)


def started_and_finished() -> tuple[Column[datetime], Column[datetime]]:
    """`started_at` then `finished_at` of a piece of work: NULL until it starts, and until it ends."""
    return optional_timestamp("started_at"), optional_timestamp("finished_at")


def text_id() -> Column[str]:
    """`id`, the primary key, as text the service or its caller chose (never a database sequence), so
    that a retry can name the same row."""
    return Column("id", Text, primary_key=True)


def user_id() -> Column[str]:
    """`user_id`: the accounts user the row belongs to. Text and no foreign key, since users live in
    the accounts service's own database."""
    return Column("user_id", Text, nullable=False)


def request_hash() -> Column[str]:
    """`request_hash`: sha256 of the request that created the row, so that the same id or idempotency
    key sent again with another body is refused as a conflict."""
    return Column("request_hash", Text, nullable=False)


def trace_id() -> Column[str]:
    """`trace_id`: the trace of the request that wrote the row; empty when it came with none."""
    return Column("trace_id", Text, nullable=False, server_default="")


def failure() -> tuple[Column[str], Column[str]]:
    """`error_code` then `error_message`: why the row's work failed; NULL while it has not."""
    return Column("error_code", Text), Column("error_message", Text)


def text_or_empty(name: str) -> Column[str]:
    """Text that may be absent, stored as '' rather than NULL."""
    return Column(name, Text, nullable=False, server_default="")


def milli_credits(name: str) -> Column[int]:
    """An amount of credits as integer milli-credits (`kit.money.Credits.milli`), never null, 0 until
    it is set."""
    return Column(name, BigInteger, nullable=False, server_default="0")
