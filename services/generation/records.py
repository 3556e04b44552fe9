"""What the generation service's queries return: a typed, frozen record per table, built from a row by
that table's converter, so that a renamed column fails at the first read, not deep in a rule."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, fields
from typing import Any

from sqlalchemy import Row

from services.generation.values import MessageRole, MessageStatus, TaskKind, TaskStatus

_NAMES: dict[type, tuple[str, ...]] = {}  # each record class's field names, read once


def _columns(cls: type, row: Row[Any]) -> dict[str, Any]:
    """Each field of the record class `cls` from the column of its name."""
    names = _NAMES.get(cls)
    if names is None:
        names = _NAMES[cls] = tuple(f.name for f in fields(cls))
    mapping = row._mapping
    return {name: mapping[name] for name in names}


@dataclass(frozen=True)
class TaskRecord:
    """A row of `tasks` (the `quote` column is the catalog's QuoteSnapshot as protobuf bytes)."""

    id: str
    user_id: str
    kind: TaskKind
    model_code: str
    status: TaskStatus
    progress: int
    prompt: str
    ratio: str
    resolution: str
    duration_seconds: int
    n: int
    capability: str
    # [{"source": an InputSource, "id": ..., "role": an InputRole}] as the database holds them
    inputs: list[dict[str, Any]]
    system_instruction: str
    max_output_tokens: int
    quote: bytes
    price_milli: int
    charge_milli: int | None
    hold_id: str | None
    internal: bool
    run_id: str | None
    step_key: str | None
    attempt: int
    deliveries: int
    upstream_operation_id: str | None
    upstream_submitted_at: dt.datetime | None
    cancel_requested: bool
    error_code: str | None
    error_message: str | None
    input_tokens: int
    output_tokens: int
    idempotency_key: str | None
    request_hash: str
    trace_id: str
    deadline_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    created_at: dt.datetime
    updated_at: dt.datetime


@dataclass(frozen=True)
class OutputRecord:
    """A row of `outputs`: one result of a task (`blob_key` empty for text)."""

    id: str
    task_id: str
    user_id: str
    position: int
    mime_type: str
    blob_key: str
    width: int
    height: int
    duration_seconds: float
    text: str
    size_bytes: int
    created_at: dt.datetime


@dataclass(frozen=True)
class UploadRecord:
    """A row of `uploads`: an input image a user sent."""

    id: str
    user_id: str
    filename: str
    mime_type: str
    width: int
    height: int
    size_bytes: int
    sha256: str
    blob_key: str
    created_at: dt.datetime


@dataclass(frozen=True)
class ConversationRecord:
    """A row of `conversations` (Copy Studio)."""

    id: str
    user_id: str
    title: str
    model_code: str
    system_instruction: str
    created_at: dt.datetime
    updated_at: dt.datetime


@dataclass(frozen=True)
class MessageRecord:
    """A row of `messages`: a turn of a conversation (an assistant's carries its quote and hold)."""

    id: str
    conversation_id: str
    user_id: str
    role: MessageRole
    content: str
    status: MessageStatus
    model_code: str
    input_tokens: int
    output_tokens: int
    price_milli: int
    charge_milli: int
    quote: bytes | None
    hold_id: str | None
    error_code: str | None
    error_message: str | None
    idempotency_key: str | None
    created_at: dt.datetime


def task(row: Row[Any]) -> TaskRecord:
    values = _columns(TaskRecord, row)
    return TaskRecord(**{**values, "kind": TaskKind(values["kind"]), "status": TaskStatus(values["status"])})


def output(row: Row[Any]) -> OutputRecord:
    return OutputRecord(**_columns(OutputRecord, row))


def upload(row: Row[Any]) -> UploadRecord:
    return UploadRecord(**_columns(UploadRecord, row))


def conversation(row: Row[Any]) -> ConversationRecord:
    return ConversationRecord(**_columns(ConversationRecord, row))


def message(row: Row[Any]) -> MessageRecord:
    values = _columns(MessageRecord, row)
    return MessageRecord(
        **{**values, "role": MessageRole(values["role"]), "status": MessageStatus(values["status"])}
    )
