"""Provider channels: admin edits (a channel holds a key's reference, never the key)."""

from __future__ import annotations

from services.catalog.changes import Entries
from services.catalog.repository import AuditEntity
from services.catalog.schemas import Channel

CHANNELS = Entries(AuditEntity.CHANNEL, Channel, lambda catalog: catalog.channels)
