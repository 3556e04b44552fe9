"""Every query of the catalog service."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, TypeVar

from pydantic import BaseModel
from sqlalchemy import Table, func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.catalog import models as t
from services.catalog.schemas import (
    CapabilityName,
    Catalog,
    Channel,
    ModelSpec,
    PaymentMethod,
    Plan,
    RechargeRules,
    Template,
)

Entry = ModelSpec | Template | Plan | PaymentMethod | Channel
E = TypeVar("E", bound=BaseModel)

# The table of each kind of entry: a row per code.
_TABLES: dict[type[BaseModel], Table] = {
    ModelSpec: t.models,
    Template: t.templates,
    Plan: t.plans,
    PaymentMethod: t.payment_methods,
    Channel: t.channels,
}

# pg_advisory_xact_lock key for loading the seed (replicas starting together load it once).
SEED_LOCK_KEY = 0x63617461  # "cata"


@dataclass(frozen=True)
class State:
    version: int
    updated_at: datetime


class AuditEntity(StrEnum):
    """What an audit entry (and `catalog.changed`) is about: its `entity_type`."""

    CATALOG = "catalog"  # the whole catalog: the seed load
    MODEL = "model"
    DEFAULT_CAPABILITIES = "default_capabilities"
    TEMPLATE = "template"
    RECHARGE_RULES = "recharge_rules"
    PLAN = "plan"
    CHANNEL = "channel"


class AuditAction(StrEnum):
    """What a change did, as its audit entry names it."""

    SEED_LOAD = "seed.load"
    MODEL_UPSERT = "model.upsert"
    MODEL_ENABLE = "model.enable"
    MODEL_DISABLE = "model.disable"
    DEFAULT_CAPABILITIES_UPDATE = "default_capabilities.update"
    TEMPLATE_UPSERT = "template.upsert"
    TEMPLATE_ENABLE = "template.enable"
    TEMPLATE_DISABLE = "template.disable"
    RECHARGE_RULES_UPDATE = "recharge_rules.update"
    PLAN_UPSERT = "plan.upsert"
    CHANNEL_UPSERT = "channel.upsert"


@dataclass(frozen=True)
class AuditRow:
    """An audit entry as stored; its action and entity type read back as the text written."""

    id: int
    version: int
    actor_id: str
    created_at: datetime
    action: str
    entity_type: str
    entity_code: str
    diff: list[dict[str, Any]]


@dataclass(frozen=True)
class Revision:
    """Who made a new catalog version, when, and what it changed: its audit entry as written."""

    actor_id: str
    at: datetime
    action: AuditAction
    entity_type: AuditEntity
    entity_code: str
    diff: list[dict[str, Any]]


def _spec(model: BaseModel) -> dict[str, Any]:
    return model.model_dump(mode="json")


async def lock_seed(session: AsyncSession) -> None:
    await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SEED_LOCK_KEY})


async def current_version(session: AsyncSession) -> int | None:
    row = (await session.execute(select(t.catalog_state.c.version))).first()
    return None if row is None else int(row.version)


async def lock_state(session: AsyncSession) -> State | None:
    """Locks the catalog's single state row: every admin change holds it until commit."""
    row = (
        await session.execute(
            select(t.catalog_state.c.version, t.catalog_state.c.updated_at).with_for_update()
        )
    ).first()
    return None if row is None else State(int(row.version), row.updated_at)


async def snapshot_at(session: AsyncSession, version: int) -> Catalog | None:
    row = (
        await session.execute(
            select(t.config_versions.c.snapshot).where(t.config_versions.c.version == version)
        )
    ).first()
    return None if row is None else Catalog.model_validate(row.snapshot)


async def load_catalog(session: AsyncSession, state: State) -> Catalog:
    """The catalog as its tables hold it (call with the state row locked for a consistent view)."""
    state_row = (
        await session.execute(
            select(t.catalog_state.c.default_capabilities, t.catalog_state.c.capability_names)
        )
    ).one()

    async def entries(schema: type[E]) -> list[E]:
        table = _TABLES[schema]
        order = [table.c.sort_order] if "sort_order" in table.c else []
        rows = await session.execute(select(table.c.spec).order_by(*order, table.c.code))
        return [schema.model_validate(row.spec) for row in rows]

    rules = (await session.execute(select(t.recharge_rules.c.spec))).scalar_one()
    return Catalog(
        version=state.version,
        updated_at=state.updated_at,
        capabilities=[CapabilityName.model_validate(c) for c in state_row.capability_names],
        default_capabilities=list(state_row.default_capabilities),
        channels=await entries(Channel),
        models=await entries(ModelSpec),
        templates=await entries(Template),
        recharge_rules=RechargeRules.model_validate(rules),
        plans=await entries(Plan),
        payment_methods=await entries(PaymentMethod),
    )


async def _upsert(session: AsyncSession, table: Table, values: dict[str, Any]) -> None:
    statement = insert(table).values(**values)
    keys = [c.name for c in table.primary_key.columns]
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=keys, set_={k: v for k, v in values.items() if k not in keys}
        )
    )


async def save_entry(session: AsyncSession, entry: Entry) -> None:
    """Writes an entry's row: its whole definition in `spec`, and a copy of each field its table
    has a column for (what readers filter and sort on); a new entry's `updated_at` is now."""
    table = _TABLES[type(entry)]
    fields = type(entry).model_fields
    values = {c.name: getattr(entry, c.name) for c in table.columns if c.name in fields}
    values["spec"] = _spec(entry)
    if "updated_at" in values:
        values["updated_at"] = values["updated_at"] or func.now()
    await _upsert(session, table, values)


async def save_recharge_rules(session: AsyncSession, rules: RechargeRules) -> None:
    await _upsert(session, t.recharge_rules, {"id": 1, "spec": _spec(rules), "updated_at": func.now()})


async def add_version(session: AsyncSession, catalog: Catalog, revision: Revision) -> None:
    """Writes `catalog` as a new version: the state row moved to it, its snapshot, its audit entry."""
    await _upsert(
        session,
        t.catalog_state,
        {
            "id": 1,
            "version": catalog.version,
            "updated_at": revision.at,
            "default_capabilities": list(catalog.default_capabilities),
            "capability_names": [_spec(c) for c in catalog.capabilities],
        },
    )
    await session.execute(
        insert(t.config_versions).values(
            version=catalog.version,
            created_at=revision.at,
            actor_id=revision.actor_id,
            snapshot=_spec(catalog),
        )
    )
    await session.execute(
        insert(t.audit_log).values(
            version=catalog.version,
            actor_id=revision.actor_id,
            created_at=revision.at,
            action=revision.action.value,
            entity_type=revision.entity_type.value,
            entity_code=revision.entity_code,
            diff=revision.diff,
        )
    )


async def list_audit(
    session: AsyncSession, *, entity_type: str, entity_code: str, before_id: int | None, limit: int
) -> list[AuditRow]:
    a = t.audit_log
    query = select(a).order_by(a.c.id.desc()).limit(limit)
    if entity_type:
        query = query.where(a.c.entity_type == entity_type)
    if entity_code:
        query = query.where(a.c.entity_code == entity_code)
    if before_id is not None:
        query = query.where(a.c.id < before_id)
    rows = await session.execute(query)
    return [AuditRow(**row._mapping) for row in rows]
