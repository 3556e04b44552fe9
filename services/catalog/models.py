"""Tables owned by the catalog service.

Each entity has a row keyed by its code with the columns readers filter on, and its full
definition in `spec` (JSONB, validated by `schemas.py` on every write). `catalog_state` is the
single row every admin change locks: it serialises changes and holds the current version.
`config_versions` keeps the whole catalog as it was at each version (what readers fetch and what a
quote's `catalog_version` points to); `audit_log` says who changed what, when, as a JSON Patch.
"""

from __future__ import annotations

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

models = Table(
    "models",
    metadata,
    Column("code", Text, primary_key=True),
    Column("kind", Text, nullable=False),
    Column("enabled", Boolean, nullable=False),
    Column("public", Boolean, nullable=False),
    Column("sort_order", Integer, nullable=False),
    Column("spec", JSONB, nullable=False),
    updated_at(),
    CheckConstraint("kind IN ('text', 'image', 'video')", name="kind"),
)

templates = Table(
    "templates",
    metadata,
    Column("code", Text, primary_key=True),
    Column("enabled", Boolean, nullable=False),
    Column("public", Boolean, nullable=False),
    Column("sort_order", Integer, nullable=False),
    Column("spec", JSONB, nullable=False),
    updated_at(),
)

recharge_rules = Table(
    "recharge_rules",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("spec", JSONB, nullable=False),
    updated_at(),
    CheckConstraint("id = 1", name="single_row"),
)

plans = Table(
    "plans",
    metadata,
    Column("code", Text, primary_key=True),
    Column("enabled", Boolean, nullable=False),
    Column("sort_order", Integer, nullable=False),
    Column("spec", JSONB, nullable=False),
    updated_at(),
)

payment_methods = Table(
    "payment_methods",
    metadata,
    Column("code", Text, primary_key=True),
    Column("enabled", Boolean, nullable=False),
    Column("sort_order", Integer, nullable=False),
    Column("spec", JSONB, nullable=False),
    updated_at(),
)

channels = Table(
    "channels",
    metadata,
    Column("code", Text, primary_key=True),
    Column("enabled", Boolean, nullable=False),
    Column("spec", JSONB, nullable=False),
    updated_at(),
)

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
