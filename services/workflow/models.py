"""Tables owned by the workflow service: runs and their steps (plus the outbox and inbox).

A run row is the checkpoint of a durable workflow: its status, the template snapshot and the
ledger ids it wrote. Each step row is the checkpoint of one generation task: after a crash the run
resumes at its first step without a stored output.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
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

from kit.service_tables import created_at, service_tables, updated_at

metadata, outbox, inbox = service_tables()


class RunStatus(StrEnum):
    """runs.status. The values are the stored strings (and the check constraint's)."""

    # The row exists so that a crash during the ledger call is recovered (never debited twice with the
    # same deterministic id, never lost); nothing runs until the debit is confirmed.
    DEBITING = "debiting"
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"


class StepStatus(StrEnum):
    """run_steps.status."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"


class RefundState(StrEnum):
    """runs.refund_state."""

    NONE = "none"  # nothing to refund
    PENDING = "pending"  # owed, the ledger call is not confirmed yet
    DONE = "done"  # written


class RefundPolicy(StrEnum):
    """runs.refund_policy, snapshotted from the template at start."""

    FULL = "full"  # the whole price
    PROPORTIONAL = "proportional"  # price × unfinished steps / all steps


UNFINISHED = (RunStatus.DEBITING, RunStatus.PENDING, RunStatus.RUNNING)
FINAL = (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELED)


def _in(column: str, values: Iterable[StrEnum]) -> str:
    return f"{column} IN ({', '.join(repr(v.value) for v in values)})"


runs = Table(
    "runs",
    metadata,
    Column("id", Text, primary_key=True),
    Column("user_id", Text, nullable=False),
    Column("idempotency_key", Text, nullable=False),
    # sha256 of the start request, to refuse a replayed key with another body.
    Column("request_hash", Text, nullable=False),
    Column("template_code", Text, nullable=False),
    # atelier.catalog.v1.WorkflowTemplate as it was at start (serialized protobuf).
    Column("template_snapshot", LargeBinary, nullable=False),
    Column("catalog_version", BigInteger, nullable=False, server_default="0"),
    Column("inputs", JSONB, nullable=False),
    Column("status", Text, nullable=False),
    Column("price_milli", BigInteger, nullable=False),
    Column("refund_policy", Text, nullable=False),
    Column("debit_transfer_id", Text),
    Column("refund_state", Text, nullable=False, server_default=RefundState.NONE.value),
    Column("refund_milli", BigInteger, nullable=False, server_default="0"),
    Column("refund_transfer_id", Text),
    Column("cancel_requested", Boolean, nullable=False, server_default="false"),
    Column("error_code", Text),
    Column("error_message", Text),
    Column("trace_id", Text, nullable=False, server_default=""),
    created_at(),
    Column("started_at", DateTime(timezone=True)),
    Column("finished_at", DateTime(timezone=True)),
    updated_at(),
    UniqueConstraint("user_id", "idempotency_key", name="uq_runs_user_id_idempotency_key"),
    CheckConstraint(_in("status", RunStatus), name="status"),
    CheckConstraint(_in("refund_state", RefundState), name="refund_state"),
    CheckConstraint("price_milli >= 0 AND refund_milli >= 0 AND refund_milli <= price_milli", name="amounts"),
    Index("ix_runs_user_created", "user_id", "created_at", "id"),
    # The resume loop's work list: unfinished runs and owed refunds.
    Index(
        "ix_runs_unfinished",
        "updated_at",
        postgresql_where=text(f"{_in('status', UNFINISHED)} OR refund_state = '{RefundState.PENDING.value}'"),
    ),
)

run_steps = Table(
    "run_steps",
    metadata,
    Column("run_id", Text, ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    Column("index", Integer, primary_key=True),
    Column("key", Text, nullable=False),
    # text | image | video
    Column("kind", Text, nullable=False),
    Column("model_code", Text, nullable=False),
    Column("status", Text, nullable=False, server_default=StepStatus.PENDING.value),
    # The generation task, submitted with an idempotency key derived from run + step.
    Column("task_id", Text),
    # atelier.generation.v1.TaskOutput messages as JSON.
    Column("outputs", JSONB, nullable=False, server_default="[]"),
    Column("error_code", Text),
    Column("error_message", Text),
    Column("started_at", DateTime(timezone=True)),
    Column("finished_at", DateTime(timezone=True)),
    updated_at(),
    UniqueConstraint("run_id", "key", name="uq_run_steps_run_id_key"),
    CheckConstraint(_in("status", StepStatus), name="status"),
)
