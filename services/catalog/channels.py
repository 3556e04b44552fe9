"""Provider channels: admin edits (a channel holds a key's reference, never the key)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from kit.outbox import Outbox
from services.catalog import repository
from services.catalog.changes import Change, apply_change, replace, required
from services.catalog.repository import AuditAction, AuditEntity
from services.catalog.schemas import Catalog, Channel


async def upsert_channel(
    session: AsyncSession, outbox: Outbox, *, actor_id: str, data: dict[str, Any], expected_version: int = 0
) -> Change:
    code = str(data.get("code", ""))

    def mutate(catalog: Catalog) -> None:
        existing = catalog.channel(code)
        replace(
            catalog.channels, Channel.model_validate({**data, "updated_at": existing and existing.updated_at})
        )

    return await apply_change(
        session,
        outbox,
        actor_id=actor_id,
        expected_version=expected_version,
        action=AuditAction.CHANNEL_UPSERT,
        entity_type=AuditEntity.CHANNEL,
        entity_code=code,
        get=lambda c: c.channel(code),
        mutate=mutate,
        save=lambda s, c: repository.save_channel(s, required(c.channel(code))),
    )
