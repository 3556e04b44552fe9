"""The one way an admin change is applied (`apply_change`): serialised on the state row, checked
against `expected_version`, validated as a whole catalog, and recorded as a new version. The lists
admins edit entry by entry (`Entries`: models, templates, plans, channels) share one upsert and one
switch (`upsert`, `set_enabled`); the entity modules say only what their own change does."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from kit.errors import Conflict, InvalidArgument, NotFound, Unavailable
from kit.outbox import Outbox
from services.catalog import repository
from services.catalog.repository import AuditAction, AuditEntity, Revision
from services.catalog.schemas import Catalog, Channel, ModelSpec, Plan, Template
from services.catalog.versions import comparable, json_patch, record, sort_catalog

log = logging.getLogger(__name__)
E = TypeVar("E", ModelSpec, Template, Plan, Channel)

# Fields an update mask may not name: the code is the entry's key, the timestamp the change's own.
READ_ONLY = frozenset({"code", "updated_at"})


@dataclass(frozen=True)
class Edit:
    """An admin change as the edge opens it: its transaction and outbox, who makes it, and the
    catalog version the admin saw (0: don't check)."""

    session: AsyncSession
    outbox: Outbox
    actor_id: str
    expected_version: int = 0


@dataclass(frozen=True)
class Change:
    """What an admin change did: the catalog after it, and whether it made a new version."""

    catalog: Catalog
    changed: bool


@dataclass(frozen=True)
class Subject:
    """What a change is about, as its audit entry names it, and how that part of the catalog is
    read (to compare before and after) and written."""

    entity_type: AuditEntity
    code: str
    get: Callable[[Catalog], Any]
    save: Callable[[AsyncSession, Catalog], Awaitable[None]]


async def apply_change(
    edit: Edit, subject: Subject, action: AuditAction, mutate: Callable[[Catalog], None]
) -> Change:
    """One admin change: lock the state row (changes are serialised, so none is lost), check
    `expected_version` (0 = don't check), apply, validate the whole catalog, and write the entity,
    a new version, an audit row and `catalog.changed` — all in the edit's transaction."""
    session, expected_version = edit.session, edit.expected_version
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
    before = comparable(subject.get(catalog))
    try:
        mutate(catalog)
    except ValidationError as exc:
        raise _invalid(exc, subject.entity_type) from exc
    problems = catalog.problems()
    if problems:
        raise InvalidArgument("; ".join(problems), code="invalid_catalog", problems="; ".join(problems))
    after = comparable(subject.get(catalog))
    if before == after:
        return Change(catalog, changed=False)
    now = datetime.now(UTC)
    sort_catalog(catalog)
    catalog.version = state.version + 1
    catalog.updated_at = now
    entity = subject.get(catalog)
    if isinstance(entity, ModelSpec | Template | Channel):
        entity.updated_at = now
    await subject.save(session, catalog)
    diff = json_patch(before, after)
    revision = Revision(edit.actor_id, now, action, subject.entity_type, subject.code, diff)
    await record(session, edit.outbox, catalog, revision)
    await session.flush()
    log.info(
        "catalog changed",
        extra={
            "version": catalog.version,
            "action": action,
            "entity": f"{subject.entity_type}:{subject.code}",
        },
    )
    return Change(catalog, changed=True)


@dataclass(frozen=True)
class Entries(Generic[E]):
    """A list of the catalog that admins edit entry by entry, each found by its code. Its audit
    actions are named `<entity type>.<verb>` (`model.upsert`, `template.disable`)."""

    entity_type: AuditEntity
    schema: type[E]
    items: Callable[[Catalog], list[E]]

    def find(self, catalog: Catalog, code: str) -> E | None:
        return next((item for item in self.items(catalog) if item.code == code), None)

    def get(self, catalog: Catalog, code: str) -> E:
        item = self.find(catalog, code)
        if item is None:
            raise self.missing(code)
        return item

    def missing(self, code: str, why: str = "") -> NotFound:
        """`model_not_found`, `template_not_found`, ..."""
        return NotFound(f"no {self.entity_type} {code!r}{why}", code=f"{self.entity_type}_not_found")

    def subject(self, code: str) -> Subject:
        async def save(session: AsyncSession, catalog: Catalog) -> None:
            await repository.save_entry(session, self.get(catalog, code))

        return Subject(self.entity_type, code, lambda catalog: self.find(catalog, code), save)

    def action(self, verb: str) -> AuditAction:
        return AuditAction(f"{self.entity_type}.{verb}")


async def upsert(
    entries: Entries[E], edit: Edit, data: dict[str, Any], fields: list[str] | None = None
) -> Change:
    """Creates or replaces an entry (fields: only those, onto the existing entry)."""
    code = str(data.get("code", ""))
    if fields is not None:
        _check_fields(fields, entries.schema)

    def mutate(catalog: Catalog) -> None:
        existing = entries.find(catalog, code)
        if existing is None and fields is not None:
            raise entries.missing(code, " to update")
        _replace(entries.items(catalog), entries.schema.model_validate(_merge(existing, data, fields)))

    return await apply_change(edit, entries.subject(code), entries.action("upsert"), mutate)


async def set_enabled(entries: Entries[E], edit: Edit, code: str, enabled: bool) -> Change:
    """Enables or disables an entry (of the lists that have `enable` and `disable` actions)."""

    def mutate(catalog: Catalog) -> None:
        entries.get(catalog, code).enabled = enabled

    action = entries.action("enable" if enabled else "disable")
    return await apply_change(edit, entries.subject(code), action, mutate)


def _invalid(exc: ValidationError, what: str) -> InvalidArgument:
    problems = "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or what}: {err['msg']}" for err in exc.errors()
    )
    return InvalidArgument(f"invalid {what}: {problems}", code=f"invalid_{what}", problems=problems)


def _merge(existing: BaseModel | None, data: dict[str, Any], fields: list[str] | None) -> dict[str, Any]:
    """The entry's new definition: `data`'s fields (or only those named) over the existing entry,
    whose other fields (its `updated_at`) stay."""
    if existing is None:
        return data
    return {
        **existing.model_dump(),
        **{name: data.get(name) for name in (data if fields is None else fields)},
    }


def _replace(items: list[E], item: E) -> None:
    for index, old in enumerate(items):
        if old.code == item.code:
            items[index] = item
            return
    items.append(item)


def _check_fields(fields: list[str], schema: type[BaseModel]) -> None:
    unknown = sorted({f for f in fields if f not in schema.model_fields or f in READ_ONLY})
    if unknown:
        raise InvalidArgument(
            f"these fields cannot be updated: {', '.join(unknown)}", code="invalid_update_mask"
        )
