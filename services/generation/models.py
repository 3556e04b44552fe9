"""Tables owned by the generation service."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Double,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

from kit.service_tables import (
    created_at,
    failure,
    milli_credits,
    optional_timestamp,
    request_hash,
    service_tables,
    started_and_finished,
    text_id,
    text_or_empty,
    timestamps,
    trace_id,
    user_id,
)

metadata, outbox, inbox = service_tables()


def _token_counts() -> tuple[Column[int], Column[int]]:
    """`input_tokens` then `output_tokens`: the usage the upstream reported, 0 until it does."""
    return (
        Column("input_tokens", BigInteger, nullable=False, server_default="0"),
        Column("output_tokens", BigInteger, nullable=False, server_default="0"),
    )


tasks = Table(
    "tasks",
    metadata,
    text_id(),
    user_id(),
    # a TaskKind (services/generation/values.py)
    Column("kind", Text, nullable=False),
    Column("model_code", Text, nullable=False),
    # a TaskStatus
    Column("status", Text, nullable=False),
    Column("progress", Integer, nullable=False, server_default="0"),
    text_or_empty("prompt"),
    text_or_empty("ratio"),
    text_or_empty("resolution"),
    Column("duration_seconds", Integer, nullable=False, server_default="0"),
    Column("n", Integer, nullable=False, server_default="1"),
    text_or_empty("capability"),
    # [{"source": an InputSource, "id": ..., "role": an InputRole}]
    Column("inputs", JSONB, nullable=False, server_default="[]"),
    text_or_empty("system_instruction"),
    Column("max_output_tokens", BigInteger, nullable=False, server_default="0"),
    # The catalog's QuoteSnapshot as it was at submission (protobuf bytes): later price or channel
    # changes never touch this task.
    Column("quote", LargeBinary, nullable=False),
    Column("price_milli", BigInteger, nullable=False),
    Column("charge_milli", BigInteger),
    Column("hold_id", Text),
    Column("internal", Boolean, nullable=False, server_default="false"),
    Column("run_id", Text),
    Column("step_key", Text),
    Column("attempt", Integer, nullable=False, server_default="1"),
    # How many times a worker picked the job up.
    Column("deliveries", Integer, nullable=False, server_default="0"),
    # Stored before polling so that a redelivered job resumes instead of submitting (and paying) twice.
    Column("upstream_operation_id", Text),
    optional_timestamp("upstream_submitted_at"),
    Column("cancel_requested", Boolean, nullable=False, server_default="false"),
    *failure(),
    *_token_counts(),
    Column("idempotency_key", Text),
    request_hash(),
    trace_id(),
    Column("deadline_at", DateTime(timezone=True), nullable=False),
    *started_and_finished(),
    *timestamps(),
    UniqueConstraint("user_id", "idempotency_key"),
    Index("ix_tasks_user_created", "user_id", text("created_at DESC"), text("id DESC")),
)

outputs = Table(
    "outputs",
    metadata,
    text_id(),
    Column("task_id", Text, ForeignKey("tasks.id"), nullable=False),
    user_id(),
    Column("position", Integer, nullable=False),
    Column("mime_type", Text, nullable=False),
    # Empty for text outputs.
    text_or_empty("blob_key"),
    Column("width", Integer, nullable=False, server_default="0"),
    Column("height", Integer, nullable=False, server_default="0"),
    Column("duration_seconds", Double, nullable=False, server_default="0"),
    text_or_empty("text"),
    Column("size_bytes", BigInteger, nullable=False, server_default="0"),
    created_at(),
    UniqueConstraint("task_id", "position"),
)

uploads = Table(
    "uploads",
    metadata,
    text_id(),
    user_id(),
    text_or_empty("filename"),
    Column("mime_type", Text, nullable=False),
    Column("width", Integer, nullable=False),
    Column("height", Integer, nullable=False),
    Column("size_bytes", BigInteger, nullable=False),
    Column("sha256", Text, nullable=False),
    Column("blob_key", Text, nullable=False),
    created_at(),
    Index("ix_uploads_user", "user_id", "created_at"),
)

conversations = Table(
    "conversations",
    metadata,
    text_id(),
    user_id(),
    text_or_empty("title"),
    Column("model_code", Text, nullable=False),
    text_or_empty("system_instruction"),
    *timestamps(),
    Index("ix_conversations_user_updated", "user_id", text("updated_at DESC"), text("id DESC")),
)

messages = Table(
    "messages",
    metadata,
    text_id(),
    Column("conversation_id", Text, ForeignKey("conversations.id"), nullable=False),
    user_id(),
    # a MessageRole (services/generation/values.py)
    Column("role", Text, nullable=False),
    text_or_empty("content"),
    # a MessageStatus
    Column("status", Text, nullable=False),
    text_or_empty("model_code"),
    *_token_counts(),
    milli_credits("price_milli"),
    milli_credits("charge_milli"),
    Column("quote", LargeBinary),
    Column("hold_id", Text),
    *failure(),
    # On the assistant message: the caller's key for the SendMessage that made it.
    Column("idempotency_key", Text),
    created_at(),
    UniqueConstraint("user_id", "idempotency_key"),
    Index("ix_messages_conversation", "conversation_id", "created_at"),
)
