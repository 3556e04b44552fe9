"""Every query of the catalog service."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

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

    async def specs(table: Table) -> list[dict[str, Any]]:
        order = [table.c.sort_order] if "sort_order" in table.c else []
        rows = await session.execute(select(table.c.spec).order_by(*order, table.c.code))
        return [row.spec for row in rows]

    rules = (await session.execute(select(t.recharge_rules.c.spec))).scalar_one()
    return Catalog(
        version=state.version,
        updated_at=state.updated_at,
        capabilities=[CapabilityName.model_validate(c) for c in state_row.capability_names],
        default_capabilities=list(state_row.default_capabilities),
        channels=[Channel.model_validate(s) for s in await specs(t.channels)],
        models=[ModelSpec.model_validate(s) for s in await specs(t.models)],
        templates=[Template.model_validate(s) for s in await specs(t.templates)],
        recharge_rules=RechargeRules.model_validate(rules),
        plans=[Plan.model_validate(s) for s in await specs(t.plans)],
        payment_methods=[PaymentMethod.model_validate(s) for s in await specs(t.payment_methods)],
    )


async def _upsert(session: AsyncSession, table: Table, values: dict[str, Any]) -> None:
    statement = insert(table).values(**values)
    keys = [c.name for c in table.primary_key.columns]
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=keys, set_={k: v for k, v in values.items() if k not in keys}
        )
    )


async def save_model(session: AsyncSession, model: ModelSpec) -> None:
    await _upsert(
        session,
        t.models,
        {
            "code": model.code,
            "kind": model.kind,
            "enabled": model.enabled,
            "public": model.public,
            "sort_order": model.sort_order,
            "spec": _spec(model),
            "updated_at": model.updated_at or func.now(),
        },
    )


async def save_template(session: AsyncSession, template: Template) -> None:
    await _upsert(
        session,
        t.templates,
        {
            "code": template.code,
            "enabled": template.enabled,
            "public": template.public,
            "sort_order": template.sort_order,
            "spec": _spec(template),
            "updated_at": template.updated_at or func.now(),
        },
    )


async def save_plan(session: AsyncSession, plan: Plan) -> None:
    await _upsert(
        session,
        t.plans,
        {"code": plan.code, "enabled": plan.enabled, "sort_order": plan.sort_order, "spec": _spec(plan)},
    )


async def save_payment_method(session: AsyncSession, method: PaymentMethod) -> None:
    await _upsert(
        session,
        t.payment_methods,
        {
            "code": method.code,
            "enabled": method.enabled,
            "sort_order": method.sort_order,
            "spec": _spec(method),
        },
    )


async def save_channel(session: AsyncSession, channel: Channel) -> None:
    await _upsert(
        session,
        t.channels,
        {
            "code": channel.code,
            "enabled": channel.enabled,
            "spec": _spec(channel),
            "updated_at": channel.updated_at or func.now(),
        },
    )


async def save_recharge_rules(session: AsyncSession, rules: RechargeRules) -> None:
    await _upsert(session, t.recharge_rules, {"id": 1, "spec": _spec(rules), "updated_at": func.now()})


async def save_state(
    session: AsyncSession,
    *,
    version: int,
    updated_at: datetime,
    default_capabilities: list[str],
    capability_names: list[CapabilityName],
) -> None:
    await _upsert(
        session,
        t.catalog_state,
        {
            "id": 1,
            "version": version,
            "updated_at": updated_at,
            "default_capabilities": list(default_capabilities),
            "capability_names": [_spec(c) for c in capability_names],
        },
    )


async def add_version(
    session: AsyncSession, *, version: int, created_at: datetime, actor_id: str, snapshot: Catalog
) -> None:
    await session.execute(
        insert(t.config_versions).values(
            version=version, created_at=created_at, actor_id=actor_id, snapshot=_spec(snapshot)
        )
    )


async def add_audit(
    session: AsyncSession,
    *,
    version: int,
    actor_id: str,
    created_at: datetime,
    action: AuditAction,
    entity_type: AuditEntity,
    entity_code: str,
    diff: list[dict[str, Any]],
) -> None:
    await session.execute(
        insert(t.audit_log).values(
            version=version,
            actor_id=actor_id,
            created_at=created_at,
            action=action.value,
            entity_type=entity_type.value,
            entity_code=entity_code,
            diff=diff,
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
    return [
        AuditRow(
            id=row.id,
            version=row.version,
            actor_id=row.actor_id,
            created_at=row.created_at,
            action=row.action,
            entity_type=row.entity_type,
            entity_code=row.entity_code,
            diff=row.diff,
        )
        for row in rows
    ]
