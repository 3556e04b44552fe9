"""Loading the seed: the YAML file read and checked, turned into version 1 of the catalog, and
written into an empty catalog once (replicas starting together load it once)."""

from __future__ import annotations

from pathlib import Path

import yaml
from sqlalchemy.ext.asyncio import AsyncSession

from kit.outbox import Outbox
from services.catalog import repository
from services.catalog.repository import AuditAction, AuditEntity, Revision
from services.catalog.schemas import Catalog, Channel, ModelSpec, SeedFile, Template
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
    dated: list[ModelSpec | Template | Channel] = [*catalog.models, *catalog.templates, *catalog.channels]
    for entry in dated:
        entry.updated_at = loaded_at
    catalog.version = 1
    catalog.updated_at = loaded_at
    sort_catalog(catalog)
    return catalog


async def load_seed(session: AsyncSession, outbox: Outbox, seed: SeedFile) -> bool:
    """Loads `seed` into an empty catalog as version 1. Idempotent: False when a catalog exists."""
    await repository.lock_seed(session)
    if await repository.current_version(session) is not None:
        return False
    catalog = seed_catalog(seed)
    entries: list[repository.Entry] = [
        *catalog.channels,
        *catalog.models,
        *catalog.templates,
        *catalog.plans,
        *catalog.payment_methods,
    ]
    for entry in entries:
        await repository.save_entry(session, entry)
    await repository.save_recharge_rules(session, catalog.recharge_rules)
    revision = Revision(
        actor_id=SEED_ACTOR,
        at=seed.effective_date,
        action=AuditAction.SEED_LOAD,
        entity_type=AuditEntity.CATALOG,
        entity_code="",
        diff=[{"op": "add", "path": "", "value": comparable(catalog)}],
    )
    await record(session, outbox, catalog, revision)
    await session.flush()
    return True
