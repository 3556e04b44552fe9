"""Loading the seed: the YAML file read and checked, turned into version 1 of the catalog, and
written into an empty catalog once (replicas starting together load it once)."""

from __future__ import annotations

from pathlib import Path

import yaml
from sqlalchemy.ext.asyncio import AsyncSession

from kit.outbox import Outbox
from services.catalog import repository
from services.catalog.repository import AuditAction, AuditEntity
from services.catalog.schemas import Catalog, SeedFile
from services.catalog.versions import comparable, record, sort_catalog

SEED_ACTOR = "system:seed"


def read_seed(path: Path) -> SeedFile:
    with path.open(encoding="utf-8") as handle:
        document = yaml.safe_load(handle)
    seed = SeedFile.model_validate(document)
    problems = seed.problems()
    if problems:
        raise ValueError(f"{path}: inconsistent seed: {'; '.join(problems)}")
    return seed


def seed_catalog(seed: SeedFile) -> Catalog:
    """The catalog a seed describes, as version 1 dated the seed's effective date."""
    loaded_at = seed.effective_date
    catalog = Catalog.model_validate(seed.model_dump(exclude={"effective_date"}))
    for model in catalog.models:
        model.updated_at = loaded_at
    for template in catalog.templates:
        template.updated_at = loaded_at
    for channel in catalog.channels:
        channel.updated_at = loaded_at
    catalog.version = 1
    catalog.updated_at = loaded_at
    sort_catalog(catalog)
    return catalog


async def load_seed(session: AsyncSession, outbox: Outbox, seed: SeedFile) -> bool:
    """Loads `seed` into an empty catalog as version 1. Idempotent: False when a catalog exists."""
    await repository.lock_seed(session)
    if await repository.current_version(session) is not None:
        return False
    loaded_at = seed.effective_date
    catalog = seed_catalog(seed)
    for channel in catalog.channels:
        await repository.save_channel(session, channel)
    for model in catalog.models:
        await repository.save_model(session, model)
    for template in catalog.templates:
        await repository.save_template(session, template)
    for plan in catalog.plans:
        await repository.save_plan(session, plan)
    for method in catalog.payment_methods:
        await repository.save_payment_method(session, method)
    await repository.save_recharge_rules(session, catalog.recharge_rules)
    await repository.save_state(
        session,
        version=1,
        updated_at=loaded_at,
        default_capabilities=catalog.default_capabilities,
        capability_names=catalog.capabilities,
    )
    await record(
        session,
        outbox,
        catalog,
        actor_id=SEED_ACTOR,
        at=loaded_at,
        action=AuditAction.SEED_LOAD,
        entity_type=AuditEntity.CATALOG,
        entity_code="",
        diff=[{"op": "add", "path": "", "value": comparable(catalog)}],
    )
    await session.flush()
    return True
