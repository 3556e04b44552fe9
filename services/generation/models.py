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

from kit.service_tables import created_at, service_tables, timestamps

metadata, outbox, inbox = service_tables()


tasks = Table(
    "tasks",
    metadata,
    Column("id", Text, primary_key=True),
    Column("user_id", Text, nullable=False),
    # a TaskKind (services/generation/values.py)
    Column("kind", Text, nullable=False),
    Column("model_code", Text, nullable=False),
    # a TaskStatus
    Column("status", Text, nullable=False),
    Column("progress", Integer, nullable=False, server_default="0"),
    Column("prompt", Text, nullable=False, server_default=""),
    Column("ratio", Text, nullable=False, server_default=""),
    Column("resolution", Text, nullable=False, server_default=""),
    Column("duration_seconds", Integer, nullable=False, server_default="0"),
    Column("n", Integer, nullable=False, server_default="1"),
    Column("capability", Text, nullable=False, server_default=""),
    # [{"source": an InputSource, "id": ..., "role": an InputRole}]
    Column("inputs", JSONB, nullable=False, server_default="[]"),
    Column("system_instruction", Text, nullable=False, server_default=""),
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
    Column("upstream_submitted_at", DateTime(timezone=True)),
    Column("cancel_requested", Boolean, nullable=False, server_default="false"),
    Column("error_code", Text),
    Column("error_message", Text),
    Column("input_tokens", BigInteger, nullable=False, server_default="0"),
    Column("output_tokens", BigInteger, nullable=False, server_default="0"),
    Column("idempotency_key", Text),
    # Fingerprint of the request under `idempotency_key`: a replay with another body is refused.
    Column("request_hash", Text, nullable=False),
    Column("trace_id", Text, nullable=False, server_default=""),
    Column("deadline_at", DateTime(timezone=True), nullable=False),
    Column("started_at", DateTime(timezone=True)),
    Column("finished_at", DateTime(timezone=True)),
    *timestamps(),
    UniqueConstraint("user_id", "idempotency_key"),
    Index("ix_tasks_user_created", "user_id", text("created_at DESC"), text("id DESC")),
)

outputs = Table(
    "outputs",
    metadata,
    Column("id", Text, primary_key=True),
    Column("task_id", Text, ForeignKey("tasks.id"), nullable=False),
    Column("user_id", Text, nullable=False),
    Column("position", Integer, nullable=False),
    Column("mime_type", Text, nullable=False),
    # Empty for text outputs.
    Column("blob_key", Text, nullable=False, server_default=""),
    Column("width", Integer, nullable=False, server_default="0"),
    Column("height", Integer, nullable=False, server_default="0"),
    Column("duration_seconds", Double, nullable=False, server_default="0"),
    Column("text", Text, nullable=False, server_default=""),
    Column("size_bytes", BigInteger, nullable=False, server_default="0"),
    created_at(),
    UniqueConstraint("task_id", "position"),
)

uploads = Table(
    "uploads",
    metadata,
    Column("id", Text, primary_key=True),
    Column("user_id", Text, nullable=False),
    Column("filename", Text, nullable=False, server_default=""),
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
    Column("id", Text, primary_key=True),
    Column("user_id", Text, nullable=False),
    Column("title", Text, nullable=False, server_default=""),
    Column("model_code", Text, nullable=False),
    Column("system_instruction", Text, nullable=False, server_default=""),
    *timestamps(),
    Index("ix_conversations_user_updated", "user_id", text("updated_at DESC"), text("id DESC")),
)

messages = Table(
    "messages",
    metadata,
    Column("id", Text, primary_key=True),
    Column("conversation_id", Text, ForeignKey("conversations.id"), nullable=False),
    Column("user_id", Text, nullable=False),
    # a MessageRole (services/generation/values.py)
    Column("role", Text, nullable=False),
    Column("content", Text, nullable=False, server_default=""),
    # a MessageStatus
    Column("status", Text, nullable=False),
    Column("model_code", Text, nullable=False, server_default=""),
    Column("input_tokens", BigInteger, nullable=False, server_default="0"),
    Column("output_tokens", BigInteger, nullable=False, server_default="0"),
    Column("price_milli", BigInteger, nullable=False, server_default="0"),
    Column("charge_milli", BigInteger, nullable=False, server_default="0"),
    Column("quote", LargeBinary),
    Column("hold_id", Text),
    Column("error_code", Text),
    Column("error_message", Text),
    # On the assistant message: the caller's key for the SendMessage that made it.
    Column("idempotency_key", Text),
    created_at(),
    UniqueConstraint("user_id", "idempotency_key"),
    Index("ix_messages_conversation", "conversation_id", "created_at"),
)
