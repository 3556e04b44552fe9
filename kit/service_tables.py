"""What every service's `models.py` starts from: its `MetaData` (constraint names by convention) with the
outbox and inbox tables, and the `created_at` / `updated_at` columns most tables carry.

    metadata, outbox, inbox = service_tables()

    runs = Table("runs", metadata, Column("id", Text, primary_key=True), *timestamps())

Each call makes new objects: a column belongs to one table, and each service owns its own metadata.
"""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

from sqlalchemy import Column, DateTime, MetaData, Table, func

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
