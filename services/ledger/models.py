"""Tables owned by the ledger service.

Double entry: every transfer moves a positive amount from `debit_account` to `credit_account`. Each
account keeps running totals (posted credits, posted debits and pending ones) updated in the same
transaction as the transfer, so a balance is one row read and the sum of every account's
`posted_credits - posted_debits` is always zero.
"""

from __future__ import annotations

from typing import Any

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

from kit.service_tables import (
    created_at,
    milli_credits,
    optional_timestamp,
    request_hash,
    service_tables,
    text_id,
    text_or_empty,
    timestamp_column,
    timestamps,
    trace_id,
    user_id,
)

metadata, outbox, inbox = service_tables()


def _seq() -> Column[int]:
    """`seq`: the order rows were written in, which ids (chosen by callers) do not give."""
    return Column("seq", BigInteger, Identity(), nullable=False, unique=True)


def _json_object(name: str) -> Column[Any]:
    """A JSON object, never null, `{}` when there is nothing to say."""
    return Column(name, JSONB, nullable=False, server_default=text("'{}'::jsonb"))


# "user:<user_id>" wallets (kind "wallet") and "system:..." accounts (kind "system").
accounts = Table(
    "accounts",
    metadata,
    text_id(),
    Column("kind", Text, nullable=False),
    Column("user_id", Text, unique=True),
    milli_credits("posted_credits"),
    milli_credits("posted_debits"),
    milli_credits("pending_credits"),
    milli_credits("pending_debits"),
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
    text_id(),
    _seq(),
    Column("kind", Text, nullable=False),
    Column("debit_account", Text, nullable=False),
    Column("credit_account", Text, nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("status", Text, nullable=False),
    Column("user_id", Text),
    text_or_empty("reference_type"),
    text_or_empty("reference_id"),
    _json_object("metadata"),
    trace_id(),
    Column("linked_transfer_id", Text),
    optional_timestamp("expires_at"),
    optional_timestamp("resolved_at"),
    text_or_empty("reason"),
    text_or_empty("actor_id"),
    request_hash(),
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
    text_id(),
    user_id(),
    Column("method", Text, nullable=False),
    Column("provider", Text, nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("currency", Text, nullable=False),
    text_or_empty("plan_code"),
    Column("paid_credits", BigInteger, nullable=False),
    Column("bonus_credits", BigInteger, nullable=False),
    Column("catalog_version", BigInteger, nullable=False, server_default="0"),
    Column("status", Text, nullable=False),
    text_or_empty("provider_checkout_id"),
    text_or_empty("pay_url"),
    Column("provider_transaction_id", Text),
    Column("paid_minor", BigInteger),
    Column("paid_currency", Text),
    text_or_empty("failure_reason"),
    Column("credit_transfer_id", Text),
    Column("bonus_transfer_id", Text),
    request_hash(),
    trace_id(),
    created_at(),
    optional_timestamp("expires_at"),
    optional_timestamp("completed_at"),
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
    text_id(),
    _seq(),
    Column("provider", Text, nullable=False),
    text_or_empty("provider_event_id"),
    text_or_empty("order_id"),
    text_or_empty("user_id"),
    Column("verified", Boolean, nullable=False),
    Column("outcome", Text, nullable=False),
    text_or_empty("reason"),
    text_or_empty("provider_status"),
    text_or_empty("provider_transaction_id"),
    Column("amount_minor", BigInteger),
    Column("amount_currency", Text),
    Column("payload_json", Text, nullable=False, server_default="{}"),
    _json_object("headers"),
    text_or_empty("remote_addr"),
    timestamp_column("received_at"),
    trace_id(),
    request_hash(),
    Index("ix_callbacks_user", "user_id", "received_at"),
    Index("ix_callbacks_order", "order_id"),
)

# Ids whose transfer was refused (insufficient balance): a retry with the same id and body is
# refused again, even after a top-up — as in TigerBeetle, a new attempt takes a new id.
failed_transfers = Table(
    "failed_transfers",
    metadata,
    text_id(),
    Column("code", Text, nullable=False),
    Column("message", Text, nullable=False),
    request_hash(),
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
