"""What a catalog version is and how one is kept: the current version read once per change
(`CatalogReader`), the canonical order every version lists in, the comparison that ignores the
timestamps a change sets, the RFC 6902 diff between two, and the record each change leaves (the
state row moved to it, the version's snapshot, an audit row and `catalog.changed`, in the caller's
transaction); and the audit log read back, newest first."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from kit.errors import Unavailable
from kit.outbox import Outbox
from services.catalog import events, repository
from services.catalog.repository import Revision
from services.catalog.schemas import Catalog


class CatalogReader:
    """The current catalog, parsed once per version (one cheap query per call when nothing changed)."""

    def __init__(self) -> None:
        self._cached: Catalog | None = None

    async def current(self, session: AsyncSession) -> Catalog:
        version = await repository.current_version(session)
        if version is None:
            raise Unavailable("the catalog is not loaded yet", code="catalog_not_loaded")
        cached = self._cached
        if cached is not None and cached.version == version:
            return cached
        snapshot = await repository.snapshot_at(session, version)
        if snapshot is None:  # pragma: no cover - versions and the state row are written together
            raise Unavailable("the catalog version is missing", code="catalog_not_loaded")
        self._cached = snapshot
        return snapshot


def sort_catalog(catalog: Catalog) -> None:
    """The order the tables give back (sort_order, code), so that every version lists alike."""
    for items in (catalog.models, catalog.templates, catalog.plans, catalog.payment_methods):
        items.sort(key=lambda item: (item.sort_order, item.code))
    catalog.channels.sort(key=lambda channel: channel.code)


def comparable(value: Any) -> Any:
    """JSON of an entity without the timestamps a change itself sets."""
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    if isinstance(value, dict):
        return {k: comparable(v) for k, v in value.items() if k not in ("updated_at", "version")}
    if isinstance(value, list):
        return [comparable(v) for v in value]
    return value


def json_patch(before: Any, after: Any, path: str = "") -> list[dict[str, Any]]:
    """An RFC 6902 JSON Patch turning `before` into `after` (lists are replaced whole)."""
    if before == after:
        return []
    if before is None:
        return [{"op": "add", "path": path, "value": after}]
    if after is None:
        return [{"op": "remove", "path": path}]
    if isinstance(before, dict) and isinstance(after, dict):
        ops: list[dict[str, Any]] = []
        for key in before:
            pointer = f"{path}/{_escape(key)}"
            if key not in after:
                ops.append({"op": "remove", "path": pointer})
            else:
                ops += json_patch(before[key], after[key], pointer)
        for key in after:
            if key not in before:
                ops.append({"op": "add", "path": f"{path}/{_escape(key)}", "value": after[key]})
        return ops
    return [{"op": "replace", "path": path, "value": after}]


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


async def record(session: AsyncSession, outbox: Outbox, catalog: Catalog, revision: Revision) -> None:
    """Keeps `catalog` as its new version (state row, snapshot, audit entry) and announces it."""
    await repository.add_version(session, catalog, revision)
    event_id, message = events.catalog_changed(
        version=catalog.version,
        actor_id=revision.actor_id,
        entity_type=revision.entity_type,
        entity_code=revision.entity_code,
        occurred_at=revision.at,
    )
    await outbox.add(session, events.CATALOG_CHANGED, message, event_id=event_id)


async def audit_log(
    session: AsyncSession, *, entity_type: str, entity_code: str, before_id: int | None, limit: int
) -> list[repository.AuditRow]:
    """Audit entries, newest first, optionally for one entity, older than `before_id` (the cursor)."""
    return await repository.list_audit(
        session, entity_type=entity_type, entity_code=entity_code, before_id=before_id, limit=limit
    )
