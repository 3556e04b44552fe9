"""Records → protobuf messages (used by the servicer and by the events the service publishes)."""

from __future__ import annotations

from collections.abc import Sequence

from atelier.catalog.v1 import catalog_pb2
from atelier.common.v1 import common_pb2
from atelier.generation.v1 import generation_pb2
from kit.protoconv import enum_by_name, timestamp
from services.generation.blobs import Blobs
from services.generation.records import (
    ConversationRecord,
    MessageRecord,
    OutputRecord,
    TaskRecord,
    UploadRecord,
)
from services.generation.values import InputRole, TaskKind, TaskStatus

# Protobuf values by the names the domain's enums carry ("queued" ↔ TASK_STATUS_QUEUED); that every
# domain value has one is a test (tests/generation/test_records.py).
KINDS = enum_by_name(common_pb2.ModelKind)
STATUSES = enum_by_name(generation_pb2.TaskStatus)
ROLES = enum_by_name(generation_pb2.InputRole)
MESSAGE_ROLES = enum_by_name(generation_pb2.MessageRole)
MESSAGE_STATUSES = enum_by_name(generation_pb2.MessageStatus)
KIND_NAMES = {value: TaskKind(name) for name, value in KINDS.items()}
STATUS_NAMES = {value: TaskStatus(name) for name, value in STATUSES.items()}
ROLE_NAMES = {value: InputRole(name) for name, value in ROLES.items()}


def credits(milli: int | None) -> common_pb2.Credits:
    return common_pb2.Credits(milli=milli or 0)


def error_detail(code: str | None, message: str | None) -> common_pb2.ErrorDetail | None:
    if not code:
        return None
    return common_pb2.ErrorDetail(code=code, message=message or "")


def output(row: OutputRecord, blobs: Blobs) -> generation_pb2.TaskOutput:
    message = generation_pb2.TaskOutput(
        id=row.id,
        index=row.position,
        mime_type=row.mime_type,
        width=row.width,
        height=row.height,
        duration_seconds=row.duration_seconds,
        text=row.text,
        size_bytes=row.size_bytes,
    )
    if row.blob_key:
        url, expires = blobs.signed_url(row.blob_key)
        message.url = url
        message.url_expires_at.CopyFrom(timestamp(expires))
    return message


def task(row: TaskRecord, output_rows: Sequence[OutputRecord], blobs: Blobs) -> generation_pb2.Task:
    message = generation_pb2.Task(
        id=row.id,
        user_id=row.user_id,
        kind=KINDS[row.kind],
        model_code=row.model_code,
        status=STATUSES[row.status],
        progress=row.progress,
        prompt=row.prompt,
        ratio=row.ratio,
        resolution=row.resolution,
        duration_seconds=row.duration_seconds,
        n=row.n,
        capability=row.capability,
        inputs=[
            generation_pb2.TaskInput(
                role=ROLES.get(item["role"], generation_pb2.INPUT_ROLE_UNSPECIFIED),
                **{item["source"]: item["id"]},
            )
            for item in row.inputs
        ],
        price=credits(row.price_milli),
        quote=catalog_pb2.QuoteSnapshot.FromString(row.quote),
        hold_id=row.hold_id or "",
        internal=row.internal,
        outputs=[output(o, blobs) for o in output_rows],
        usage=generation_pb2.TokenUsage(input_tokens=row.input_tokens, output_tokens=row.output_tokens),
        system_instruction=row.system_instruction,
        attempt=row.attempt,
        cancel_requested=row.cancel_requested,
        trace_id=row.trace_id,
    )
    if row.run_id:
        message.workflow_step.CopyFrom(
            generation_pb2.WorkflowStepRef(run_id=row.run_id, step_key=row.step_key or "")
        )
    if (error := error_detail(row.error_code, row.error_message)) is not None:
        message.error.CopyFrom(error)
    for name in ("created_at", "started_at", "finished_at", "updated_at"):
        if getattr(row, name) is not None:
            getattr(message, name).CopyFrom(timestamp(getattr(row, name)))
    return message


def upload(row: UploadRecord, blobs: Blobs) -> generation_pb2.Upload:
    url, _ = blobs.signed_url(row.blob_key)
    message = generation_pb2.Upload(
        id=row.id,
        user_id=row.user_id,
        filename=row.filename,
        mime_type=row.mime_type,
        width=row.width,
        height=row.height,
        size_bytes=row.size_bytes,
        sha256=row.sha256,
        url=url,
    )
    message.created_at.CopyFrom(timestamp(row.created_at))
    return message


def message(row: MessageRecord) -> generation_pb2.Message:
    proto = generation_pb2.Message(
        id=row.id,
        conversation_id=row.conversation_id,
        role=MESSAGE_ROLES[row.role],
        content=row.content,
        status=MESSAGE_STATUSES[row.status],
        model_code=row.model_code,
        usage=generation_pb2.TokenUsage(input_tokens=row.input_tokens, output_tokens=row.output_tokens),
        charge=credits(row.charge_milli),
        hold_id=row.hold_id or "",
    )
    if (error := error_detail(row.error_code, row.error_message)) is not None:
        proto.error.CopyFrom(error)
    proto.created_at.CopyFrom(timestamp(row.created_at))
    return proto


def conversation(
    row: ConversationRecord, message_rows: Sequence[MessageRecord] = ()
) -> generation_pb2.Conversation:
    proto = generation_pb2.Conversation(
        id=row.id,
        user_id=row.user_id,
        title=row.title,
        model_code=row.model_code,
        system_instruction=row.system_instruction,
        messages=[message(m) for m in message_rows],
    )
    proto.created_at.CopyFrom(timestamp(row.created_at))
    proto.updated_at.CopyFrom(timestamp(row.updated_at))
    return proto
