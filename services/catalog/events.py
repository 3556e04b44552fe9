"""What the catalog publishes: `catalog.changed` after every committed change (through the outbox)."""

from __future__ import annotations

import uuid
from datetime import datetime

from opentelemetry import propagate

from atelier.events.v1 import events_pb2

CATALOG_CHANGED = "catalog.changed"
PRODUCER = "catalog"


def catalog_changed(
    *, version: int, actor_id: str, entity_type: str, entity_code: str, occurred_at: datetime
) -> tuple[uuid.UUID, events_pb2.CatalogChanged]:
    event_id = uuid.uuid4()
    message = events_pb2.CatalogChanged(
        version=version, actor_id=actor_id, entity_type=entity_type, entity_code=entity_code
    )
    message.meta.event_id = str(event_id)
    message.meta.producer = PRODUCER
    message.meta.occurred_at.FromDatetime(occurred_at)
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    message.meta.trace_parent = carrier.get("traceparent", "")
    return event_id, message
