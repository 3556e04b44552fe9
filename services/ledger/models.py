"""Tables owned by the ledger service.

Double entry: every transfer moves a positive amount from `debit_account` to `credit_account`. Each
account keeps running totals (posted credits, posted debits and pending ones) updated in the same
transaction as the transfer, so a balance is one row read and the sum of every account's
`posted_credits - posted_debits` is always zero.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Identity,
    Index,
    Table,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

from kit.service_tables import created_at, service_tables, timestamp_column, timestamps

metadata, outbox, inbox = service_tables()

# "user:<user_id>" wallets (kind "wallet") and "system:..." accounts (kind "system").
accounts = Table(
    "accounts",
    metadata,
    Column("id", Text, primary_key=True),
    Column("kind", Text, nullable=False),
    Column("user_id", Text, unique=True),
    Column("posted_credits", BigInteger, nullable=False, server_default="0"),
    Column("posted_debits", BigInteger, nullable=False, server_default="0"),
    Column("pending_credits", BigInteger, nullable=False, server_default="0"),
    Column("pending_debits", BigInteger, nullable=False, server_default="0"),
    Column("version", BigInteger, nullable=False, server_default="0"),
    *timestamps(),
    CheckConstraint("kind IN ('wallet', 'system')", name="kind"),
    # The database itself refuses an overdraft, whatever the code above it does.
    CheckConstraint(
        "kind <> 'wallet' OR posted_credits - posted_debits - pending_debits >= 0",
        name="wallet_not_negative",
    ),
)

# Append-only; only a hold's status / resolved_at change (when it is captured, released or expires).
transfers = Table(
    "transfers",
    metadata,
    Column("id", Text, primary_key=True),
    Column("seq", BigInteger, Identity(), nullable=False, unique=True),
    Column("kind", Text, nullable=False),
    Column("debit_account", Text, nullable=False),
    Column("credit_account", Text, nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("status", Text, nullable=False),
    Column("user_id", Text),
    Column("reference_type", Text, nullable=False, server_default=""),
    Column("reference_id", Text, nullable=False, server_default=""),
    Column("metadata", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("trace_id", Text, nullable=False, server_default=""),
    Column("linked_transfer_id", Text),
    Column("expires_at", DateTime(timezone=True)),
    Column("resolved_at", DateTime(timezone=True)),
    Column("reason", Text, nullable=False, server_default=""),
    Column("actor_id", Text, nullable=False, server_default=""),
    # sha256 of the request that created it: the same id with another body is a conflict.
    Column("request_hash", Text, nullable=False),
    created_at(),
    CheckConstraint("amount > 0", name="amount_positive"),
    CheckConstraint("debit_account <> credit_account", name="distinct_accounts"),
    Index("ix_transfers_user_seq", "user_id", "created_at", "id"),
    Index("ix_transfers_reference", "reference_type", "reference_id"),
    Index("ix_transfers_linked", "linked_transfer_id"),
    Index("ix_transfers_trace", "trace_id"),
    Index("ix_transfers_pending_expiry", "expires_at", postgresql_where=text("status = 'pending'")),
)

recharge_orders = Table(
    "recharge_orders",
    metadata,
    Column("id", Text, primary_key=True),
    Column("user_id", Text, nullable=False),
    Column("method", Text, nullable=False),
    Column("provider", Text, nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("currency", Text, nullable=False),
    Column("plan_code", Text, nullable=False, server_default=""),
    Column("paid_credits", BigInteger, nullable=False),
    Column("bonus_credits", BigInteger, nullable=False),
    Column("catalog_version", BigInteger, nullable=False, server_default="0"),
    Column("status", Text, nullable=False),
    Column("provider_checkout_id", Text, nullable=False, server_default=""),
    Column("pay_url", Text, nullable=False, server_default=""),
    Column("provider_transaction_id", Text),
    Column("paid_minor", BigInteger),
    Column("paid_currency", Text),
    Column("failure_reason", Text, nullable=False, server_default=""),
    Column("credit_transfer_id", Text),
    Column("bonus_transfer_id", Text),
    Column("request_hash", Text, nullable=False),
    Column("trace_id", Text, nullable=False, server_default=""),
    created_at(),
    Column("expires_at", DateTime(timezone=True)),
    Column("completed_at", DateTime(timezone=True)),
    CheckConstraint("amount_minor > 0", name="amount_positive"),
    CheckConstraint("paid_credits > 0 AND bonus_credits >= 0", name="credits_valid"),
    Index("ix_recharge_orders_user", "user_id", "created_at"),
    Index("ix_recharge_orders_pending", "created_at", postgresql_where=text("status = 'pending'")),
    Index(
        "uq_recharge_orders_provider_transaction",
        "provider",
        "provider_transaction_id",
        unique=True,
        postgresql_where=text("provider_transaction_id IS NOT NULL"),
    ),
)

# Every payment callback the gateway receives, verified or not; mismatched completions too.
callbacks = Table(
    "callbacks",
    metadata,
    Column("id", Text, primary_key=True),
    Column("seq", BigInteger, Identity(), nullable=False, unique=True),
    Column("provider", Text, nullable=False),
    Column("provider_event_id", Text, nullable=False, server_default=""),
    Column("order_id", Text, nullable=False, server_default=""),
    Column("user_id", Text, nullable=False, server_default=""),
    Column("verified", Boolean, nullable=False),
    Column("outcome", Text, nullable=False),
    Column("reason", Text, nullable=False, server_default=""),
    Column("provider_status", Text, nullable=False, server_default=""),
    Column("provider_transaction_id", Text, nullable=False, server_default=""),
    Column("amount_minor", BigInteger),
    Column("amount_currency", Text),
    Column("payload_json", Text, nullable=False, server_default="{}"),
    Column("headers", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("remote_addr", Text, nullable=False, server_default=""),
    timestamp_column("received_at"),
    Column("trace_id", Text, nullable=False, server_default=""),
    Column("request_hash", Text, nullable=False),
    Index("ix_callbacks_user", "user_id", "received_at"),
    Index("ix_callbacks_order", "order_id"),
)

# Ids whose transfer was refused (insufficient balance): a retry with the same id and body is
# refused again, even after a top-up — as in TigerBeetle, a new attempt takes a new id.
failed_transfers = Table(
    "failed_transfers",
    metadata,
    Column("id", Text, primary_key=True),
    Column("code", Text, nullable=False),
    Column("message", Text, nullable=False),
    Column("request_hash", Text, nullable=False),
    created_at(),
)

# Spend per user, UTC hour, model and kind (captures and debits, less their refunds), kept in the
# same transaction as each transfer that changes spend, so usage reads cost O(buckets), not O(history).
# `charges` counts the capture/debit transfers of the bucket not yet fully refunded. Hourly so that
# day buckets in any whole-hour time zone are exact.
usage_hourly = Table(
    "usage_hourly",
    metadata,
    Column("user_id", Text, primary_key=True),
    Column("hour", DateTime(timezone=True), primary_key=True),
    Column("model", Text, primary_key=True),
    Column("kind", Text, primary_key=True),
    Column("spend_milli", BigInteger, nullable=False),
    Column("charges", BigInteger, nullable=False),
)
