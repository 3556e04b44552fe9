"""Every query of the generation service, returning the typed records of `records`. Functions take the
caller's session; none commits."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from sqlalchemy import Executable, Row, Table, and_, func, insert, literal, or_, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.generation import records
from services.generation.models import conversations, messages, outputs, tasks, uploads
from services.generation.records import (
    ConversationRecord,
    MessageRecord,
    OutputRecord,
    TaskRecord,
    UploadRecord,
)
from services.generation.values import InputSource, MessageStatus, TaskKind, TaskStatus

R = TypeVar("R")


async def _one_or_none(session: AsyncSession, query: Executable, record: Callable[[Row[Any]], R]) -> R | None:
    """The one row `query` finds as a record, or None."""
    row = (await session.execute(query)).one_or_none()
    return record(row) if row is not None else None


async def _by_id(
    session: AsyncSession,
    table: Table,
    record: Callable[[Row[Any]], R],
    row_id: str,
    *,
    user_id: str | None = None,
    lock: bool = False,
) -> R | None:
    """The row of `table` with id `row_id` as a record, or None; when `user_id` is given, only if that
    user owns it."""
    query = select(table).where(table.c.id == row_id)
    if user_id is not None:
        query = query.where(table.c.user_id == user_id)
    if lock:
        query = query.with_for_update()
    return await _one_or_none(session, query, record)


async def _insert(
    session: AsyncSession, table: Table, record: Callable[[Row[Any]], R], values: dict[str, Any]
) -> R:
    return record((await session.execute(insert(table).values(**values).returning(table))).one())


# -- tasks -------------------------------------------------------------------------------------------


async def insert_task(session: AsyncSession, values: dict[str, Any]) -> TaskRecord:
    return await _insert(session, tasks, records.task, values)


async def get_task(session: AsyncSession, task_id: str, *, lock: bool = False) -> TaskRecord | None:
    return await _by_id(session, tasks, records.task, task_id, lock=lock)


async def get_user_task(session: AsyncSession, user_id: str | None, task_id: str) -> TaskRecord | None:
    """The task when `user_id` owns it; any owner's when `user_id` is None."""
    return await _by_id(session, tasks, records.task, task_id, user_id=user_id)


async def find_by_idempotency_key(session: AsyncSession, user_id: str, key: str) -> TaskRecord | None:
    query = select(tasks).where(tasks.c.user_id == user_id, tasks.c.idempotency_key == key)
    return await _one_or_none(session, query, records.task)


async def list_tasks(
    session: AsyncSession,
    user_id: str,
    *,
    kind: TaskKind | None,
    status: TaskStatus | None,
    model_code: str | None,
    include_internal: bool,
    after: tuple[dt.datetime, str] | None,
    limit: int,
) -> list[TaskRecord]:
    query = select(tasks).where(tasks.c.user_id == user_id)
    if kind:
        query = query.where(tasks.c.kind == kind)
    if status:
        query = query.where(tasks.c.status == status)
    if model_code:
        query = query.where(tasks.c.model_code == model_code)
    if not include_internal:
        query = query.where(tasks.c.internal.is_(False))
    if after is not None:
        query = query.where(
            tuple_(tasks.c.created_at, tasks.c.id) < tuple_(literal(after[0]), literal(after[1]))
        )
    query = query.order_by(tasks.c.created_at.desc(), tasks.c.id.desc()).limit(limit)
    return [records.task(row) for row in await session.execute(query)]


async def transition(
    session: AsyncSession, task_id: str, *, from_statuses: Sequence[TaskStatus], values: dict[str, Any]
) -> TaskRecord | None:
    """Compare-and-set: changes the task only while its status is one of `from_statuses`; None when
    another writer got there first."""
    query = (
        update(tasks)
        .where(tasks.c.id == task_id, tasks.c.status.in_(from_statuses))
        .values(**values, updated_at=func.now())
        .returning(tasks)
    )
    return await _one_or_none(session, query, records.task)


async def set_operation_id(session: AsyncSession, task_id: str, operation_id: str) -> bool:
    """Records the upstream operation once; False when the task already has one or is final."""
    query = (
        update(tasks)
        .where(
            tasks.c.id == task_id,
            tasks.c.upstream_operation_id.is_(None),
            tasks.c.status == TaskStatus.RUNNING,
        )
        .values(upstream_operation_id=operation_id, upstream_submitted_at=func.now(), updated_at=func.now())
    )
    result = await session.execute(query)
    return bool(getattr(result, "rowcount", 0))


async def set_progress(session: AsyncSession, task_id: str, progress: int) -> bool:
    query = (
        update(tasks)
        .where(tasks.c.id == task_id, tasks.c.status == TaskStatus.RUNNING, tasks.c.progress < progress)
        .values(progress=progress, updated_at=func.now())
    )
    result = await session.execute(query)
    return bool(getattr(result, "rowcount", 0))


# -- outputs -----------------------------------------------------------------------------------------


async def insert_outputs(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        await session.execute(insert(outputs), list(rows))


async def outputs_of(session: AsyncSession, task_ids: Sequence[str]) -> dict[str, list[OutputRecord]]:
    found: dict[str, list[OutputRecord]] = {task_id: [] for task_id in task_ids}
    if not task_ids:
        return found
    query = (
        select(outputs).where(outputs.c.task_id.in_(task_ids)).order_by(outputs.c.task_id, outputs.c.position)
    )
    for row in await session.execute(query):
        record = records.output(row)
        found[record.task_id].append(record)
    return found


# -- uploads, and the inputs of a task (uploads or outputs) ------------------------------------------


async def insert_upload(session: AsyncSession, values: dict[str, Any]) -> UploadRecord:
    return await _insert(session, uploads, records.upload, values)


async def get_upload(
    session: AsyncSession, upload_id: str, *, user_id: str | None = None
) -> UploadRecord | None:
    """The upload; when `user_id` is given, only if that user owns it."""
    return await _by_id(session, uploads, records.upload, upload_id, user_id=user_id)


async def get_input(
    session: AsyncSession, source: str, input_id: str, *, user_id: str | None = None
) -> UploadRecord | OutputRecord | None:
    """What a task's input names (`source`): an upload, or an output of an earlier task; when `user_id` is
    given, only if that user owns it."""
    if source == InputSource.UPLOAD:
        return await get_upload(session, input_id, user_id=user_id)
    return await _by_id(session, outputs, records.output, input_id, user_id=user_id)


# -- conversations -------------------------------------------------------------------------------------


async def insert_conversation(session: AsyncSession, values: dict[str, Any]) -> ConversationRecord:
    return await _insert(session, conversations, records.conversation, values)


async def get_user_conversation(
    session: AsyncSession, user_id: str, conversation_id: str, *, lock: bool = False
) -> ConversationRecord | None:
    return await _by_id(
        session, conversations, records.conversation, conversation_id, user_id=user_id, lock=lock
    )


async def list_conversations(
    session: AsyncSession, user_id: str, *, after: tuple[dt.datetime, str] | None, limit: int
) -> list[ConversationRecord]:
    query = select(conversations).where(conversations.c.user_id == user_id)
    if after is not None:
        query = query.where(
            or_(
                conversations.c.updated_at < after[0],
                and_(conversations.c.updated_at == after[0], conversations.c.id < after[1]),
            )
        )
    query = query.order_by(conversations.c.updated_at.desc(), conversations.c.id.desc()).limit(limit)
    return [records.conversation(row) for row in await session.execute(query)]


async def update_conversation(session: AsyncSession, conversation_id: str, values: dict[str, Any]) -> None:
    await session.execute(
        update(conversations)
        .where(conversations.c.id == conversation_id)
        .values(**values, updated_at=func.now())
    )


async def messages_of(session: AsyncSession, conversation_id: str) -> list[MessageRecord]:
    query = (
        select(messages)
        .where(messages.c.conversation_id == conversation_id)
        .order_by(messages.c.created_at, messages.c.id)
    )
    return [records.message(row) for row in await session.execute(query)]


async def insert_message(session: AsyncSession, values: dict[str, Any]) -> MessageRecord:
    return await _insert(session, messages, records.message, values)


async def get_message(session: AsyncSession, message_id: str) -> MessageRecord | None:
    return await _by_id(session, messages, records.message, message_id)


async def find_message_by_key(session: AsyncSession, user_id: str, key: str) -> MessageRecord | None:
    query = select(messages).where(messages.c.user_id == user_id, messages.c.idempotency_key == key)
    return await _one_or_none(session, query, records.message)


async def finish_message(
    session: AsyncSession, message_id: str, values: dict[str, Any]
) -> MessageRecord | None:
    query = (
        update(messages)
        .where(messages.c.id == message_id, messages.c.status == MessageStatus.STREAMING)
        .values(**values)
        .returning(messages)
    )
    return await _one_or_none(session, query, records.message)
