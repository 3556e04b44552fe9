"""The one way an admin change is applied (`apply_change`): serialised on the state row, checked
against `expected_version`, validated as a whole catalog, and recorded as a new version. The
entity modules (model_specs, templates, recharge, channels) say only what their change does."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from kit.errors import Conflict, InvalidArgument, NotFound, Unavailable
from kit.outbox import Outbox
from services.catalog import repository
from services.catalog.repository import AuditAction, AuditEntity
from services.catalog.schemas import Catalog, Channel, ModelSpec, Template
from services.catalog.versions import comparable, json_patch, record, sort_catalog

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class Change:
    """What an admin change did: the catalog after it, and whether it made a new version."""

    catalog: Catalog
    changed: bool


async def apply_change(
    session: AsyncSession,
    outbox: Outbox,
    *,
    actor_id: str,
    expected_version: int,
    action: AuditAction,
    entity_type: AuditEntity,
    entity_code: str,
    get: Callable[[Catalog], Any],
    mutate: Callable[[Catalog], None],
    save: Callable[[AsyncSession, Catalog], Awaitable[None]],
) -> Change:
    """One admin change: lock the state row (changes are serialised, so none is lost), check
    `expected_version` (0 = don't check), apply, validate the whole catalog, and write the entity,
    a new version, an audit row and `catalog.changed` — all in the caller's transaction."""
    state = await repository.lock_state(session)
    if state is None:
        raise Unavailable("the catalog is not loaded yet", code="catalog_not_loaded")
    if expected_version and expected_version != state.version:
        raise Conflict(
            f"the catalog moved on to version {state.version} (you expected {expected_version}); "
            "reload and apply your change again",
            code="catalog_version_conflict",
            current_version=str(state.version),
        )
    catalog = await repository.load_catalog(session, state)
    before = comparable(get(catalog))
    try:
        mutate(catalog)
    except ValidationError as exc:
        raise _invalid(exc, entity_type) from exc
    problems = catalog.problems()
    if problems:
        raise InvalidArgument("; ".join(problems), code="invalid_catalog", problems="; ".join(problems))
    after = comparable(get(catalog))
    if before == after:
        return Change(catalog, changed=False)
    now = datetime.now(UTC)
    sort_catalog(catalog)
    catalog.version = state.version + 1
    catalog.updated_at = now
    entity = get(catalog)
    if isinstance(entity, ModelSpec | Template | Channel):
        entity.updated_at = now
    await save(session, catalog)
    await repository.save_state(
        session,
        version=catalog.version,
        updated_at=now,
        default_capabilities=catalog.default_capabilities,
        capability_names=catalog.capabilities,
    )
    await record(
        session,
        outbox,
        catalog,
        actor_id=actor_id,
        at=now,
        action=action,
        entity_type=entity_type,
        entity_code=entity_code,
        diff=json_patch(before, after),
    )
    await session.flush()
    log.info(
        "catalog changed",
        extra={"version": catalog.version, "action": action, "entity": f"{entity_type}:{entity_code}"},
    )
    return Change(catalog, changed=True)


def _invalid(exc: ValidationError, what: str) -> InvalidArgument:
    problems = "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or what}: {err['msg']}" for err in exc.errors()
    )
    return InvalidArgument(f"invalid {what}: {problems}", code=f"invalid_{what}", problems=problems)


def merge(existing: BaseModel | None, data: dict[str, Any], fields: list[str] | None) -> dict[str, Any]:
    """The entity's new definition: `data` replaces it (fields None) or only the named fields."""
    if existing is None or fields is None:
        return data
    merged = existing.model_dump()
    for name in fields:
        merged[name] = data.get(name)
    return merged


def replace(items: list[Any], item: Any) -> None:
    for index, old in enumerate(items):
        if old.code == item.code:
            items[index] = item
            return
    items.append(item)


def check_fields(fields: list[str] | None, schema: type[BaseModel], read_only: set[str]) -> None:
    if fields is None:
        return
    unknown = sorted({f for f in fields if f not in schema.model_fields or f in read_only})
    if unknown:
        raise InvalidArgument(
            f"these fields cannot be updated: {', '.join(unknown)}", code="invalid_update_mask"
        )


def required(item: T | None, message: str = "not found", code: str = "not_found") -> T:
    if item is None:
        raise NotFound(message, code=code)
    return item
