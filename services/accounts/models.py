"""Tables owned by the accounts service.

Secrets are never stored in plaintext: passwords as argon2id hashes, every token and API key as the
SHA-256 of a high-entropy random value (a fast hash is enough when the input has 256 bits of entropy,
and it lets a key be found by an index lookup).
"""

from __future__ import annotations

import uuid

from sqlalchemy import (
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Index,
    LargeBinary,
    Table,
    Text,
    Uuid,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY

from kit.service_tables import created_at, service_tables, timestamps

metadata, outbox, inbox = service_tables()


def _user_id() -> Column[uuid.UUID]:
    """The user a row belongs to; it goes when the user goes."""
    return Column("user_id", Uuid, ForeignKey("users.id", ondelete="CASCADE"), nullable=False)


users = Table(
    "users",
    metadata,
    Column("id", Uuid, primary_key=True),
    # Normalized (trimmed, lower-cased) by the service; unique on that form.
    Column("email", Text, nullable=False, unique=True),
    Column("password_hash", Text, nullable=False),
    Column("role", Text, nullable=False, server_default="user"),
    Column("status", Text, nullable=False, server_default="unverified"),
    Column("locale", Text, nullable=False, server_default="en"),
    *timestamps(),
    Column("email_verified_at", DateTime(timezone=True), nullable=True),
    CheckConstraint("role IN ('user', 'admin')", name="role"),
    CheckConstraint("status IN ('unverified', 'active', 'disabled')", name="status"),
    CheckConstraint("locale IN ('zh', 'en')", name="locale"),
    CheckConstraint("email = lower(btrim(email))", name="email_normalized"),
)
Index("ix_users_created", users.c.created_at, users.c.id)

# Single-use tokens sent by email: verification and password reset.
email_tokens = Table(
    "email_tokens",
    metadata,
    Column("id", Uuid, primary_key=True),
    _user_id(),
    Column("purpose", Text, nullable=False),
    Column("token_hash", LargeBinary, nullable=False, unique=True),
    created_at(),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("used_at", DateTime(timezone=True), nullable=True),
    CheckConstraint("purpose IN ('verify_email', 'reset_password')", name="purpose"),
)
Index(
    "ix_email_tokens_user_purpose", email_tokens.c.user_id, email_tokens.c.purpose, email_tokens.c.created_at
)

# Refresh tokens. One row per issued token; `family_id` is the session (stable across rotations).
refresh_tokens = Table(
    "refresh_tokens",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("family_id", Uuid, nullable=False),
    _user_id(),
    Column("token_hash", LargeBinary, nullable=False, unique=True),
    created_at(),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    # Set when this token was exchanged for its successor; presenting it again is reuse.
    Column("rotated_at", DateTime(timezone=True), nullable=True),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
    Column("ip", Text, nullable=False, server_default=""),
    Column("user_agent", Text, nullable=False, server_default=""),
)
Index("ix_refresh_tokens_family", refresh_tokens.c.family_id)
Index(
    "ix_refresh_tokens_user_live",
    refresh_tokens.c.user_id,
    postgresql_where=text("revoked_at IS NULL"),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", Uuid, primary_key=True),
    _user_id(),
    Column("name", Text, nullable=False),
    # The visible leading part of the key (e.g. "atl_live_3f9a2b7c"), safe to show and log.
    Column("prefix", Text, nullable=False),
    Column("key_hash", LargeBinary, nullable=False, unique=True),
    # A set of known scopes, never empty. New scopes (and the nullable budget and model-list columns a
    # key may gain) are additive: widen this constraint, add columns; no row has to be rewritten.
    Column("scopes", ARRAY(Text), nullable=False),
    created_at(),
    Column("last_used_at", DateTime(timezone=True), nullable=True),
    Column("expires_at", DateTime(timezone=True), nullable=True),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
    CheckConstraint(
        "cardinality(scopes) > 0 AND scopes <@ ARRAY['read', 'write', 'admin']::text[]", name="scopes"
    ),
)
Index("ix_api_keys_user_created", api_keys.c.user_id, api_keys.c.created_at, api_keys.c.id)
