"""Tables owned by the catalog service.

Each entity has a row keyed by its code with the columns readers filter on, and its full
definition in `spec` (JSONB, validated by `schemas.py` on every write). `catalog_state` is the
single row every admin change locks: it serialises changes and holds the current version.
`config_versions` keeps the whole catalog as it was at each version (what readers fetch and what a
quote's `catalog_version` points to); `audit_log` says who changed what, when, as a JSON Patch.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    Table,
    Text,
)
from sqlalchemy.dialects.postgresql import JSONB

from kit.service_tables import service_tables, updated_at

metadata, outbox, inbox = service_tables()


catalog_state = Table(
    "catalog_state",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("version", BigInteger, nullable=False),
    # ["image_edit", "reference_image"]: the set models with inherits_default_capabilities use.
    Column("default_capabilities", JSONB, nullable=False),
    # [{code, name: {zh, en}}]: display names of capability codes.
    Column("capability_names", JSONB, nullable=False),
    updated_at(),
    CheckConstraint("id = 1", name="single_row"),
)


def _entity(name: str, *columns: Column[Any] | CheckConstraint) -> Table:
    """An entity's table: keyed by its code, then the columns readers filter on, then its whole
    definition in `spec`."""
    return Table(
        name,
        metadata,
        Column("code", Text, primary_key=True),
        *columns,
        Column("spec", JSONB, nullable=False),
        updated_at(),
    )


def _enabled() -> Column[bool]:
    return Column("enabled", Boolean, nullable=False)


def _public() -> Column[bool]:
    return Column("public", Boolean, nullable=False)


def _sort_order() -> Column[int]:
    return Column("sort_order", Integer, nullable=False)


models = _entity(
    "models",
    Column("kind", Text, nullable=False),
    _enabled(),
    _public(),
    _sort_order(),
    CheckConstraint("kind IN ('text', 'image', 'video')", name="kind"),
)
templates = _entity("templates", _enabled(), _public(), _sort_order())

recharge_rules = Table(
    "recharge_rules",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("spec", JSONB, nullable=False),
    updated_at(),
    CheckConstraint("id = 1", name="single_row"),
)

plans = _entity("plans", _enabled(), _sort_order())
payment_methods = _entity("payment_methods", _enabled(), _sort_order())
channels = _entity("channels", _enabled())


config_versions = Table(
    "config_versions",
    metadata,
    Column("version", BigInteger, primary_key=True, autoincrement=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("actor_id", Text, nullable=False),
    # The whole catalog at this version (schemas.Catalog as JSON).
    Column("snapshot", JSONB, nullable=False),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("version", BigInteger, ForeignKey("config_versions.version"), nullable=False),
    Column("actor_id", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("action", Text, nullable=False),
    Column("entity_type", Text, nullable=False),
    Column("entity_code", Text, nullable=False),
    # RFC 6902 JSON Patch from the entity's previous definition to the new one.
    Column("diff", JSONB, nullable=False),
    Index("ix_audit_log_entity", "entity_type", "entity_code", "id"),
)
