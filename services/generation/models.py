"""Tables owned by the generation service."""

from __future__ import annotations

from sqlalchemy import MetaData

from kit.db_naming import NAMING_CONVENTION
from kit.inbox import inbox_table
from kit.outbox import outbox_table

metadata = MetaData(naming_convention=NAMING_CONVENTION)

outbox = outbox_table(metadata)
inbox = inbox_table(metadata)
