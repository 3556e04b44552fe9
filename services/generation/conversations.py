"""Copy Studio: conversations with history; a message sends the history to the text model and
streams the answer. The maximum (input estimate + output cap) is held before the call; the
`tasks.completed` event of the answer carries the actual charge from the token usage."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import IntegrityError

from atelier.catalog.v1 import catalog_pb2
from atelier.ledger.v1 import ledger_pb2
from kit.compensation import owned_or_undone
from kit.cursors import decode_cursor, encode_cursor, page_limit, split_page
from kit.db import Database
from kit.errors import FailedPrecondition, InvalidArgument, NotFound
from kit.identity import Identity
from kit.money import Credits
from kit.outbox import Outbox
from services.generation import events, repository
from services.generation.clients import Clients
from services.generation.providers import ProviderRegistry
from services.generation.providers.base import ChatMessage, ProviderError, ProviderJob, Usage
from services.generation.records import ConversationRecord, MessageRecord
from services.generation.service import (
    estimate_tokens,
    hold_id,
    new_id,
    require_kind,
    token_charge,
)
from services.generation.settings import GenerationSettings
from services.generation.values import MessageRole, MessageStatus, TaskKind, TaskStatus

log = logging.getLogger(__name__)

MAX_MESSAGE = 8000
MAX_SYSTEM = 4000
DEFAULT_MAX_OUTPUT_TOKENS = 2048


@dataclass(frozen=True)
class Streamed:
    """One item of a SendMessage stream: the user message, a delta, or the final assistant message."""

    user_message: MessageRecord | None = None
    delta: str = ""
    message_id: str = ""
    final: MessageRecord | None = None


class Conversations:
    def __init__(
        self,
        db: Database,
        outbox: Outbox,
        clients: Clients,
        providers: ProviderRegistry,
        settings: GenerationSettings,
    ) -> None:
        self.db = db
        self.outbox = outbox
        self.clients = clients
        self.providers = providers
        self.settings = settings

    async def create(
        self, user_id: str, model_code: str, title: str, system_instruction: str
    ) -> ConversationRecord:
        if not model_code:
            raise InvalidArgument("model_code is required", code="invalid_argument", field="model_code")
        if len(system_instruction) > MAX_SYSTEM or len(title) > 200:
            raise InvalidArgument("title or system instruction is too long", code="invalid_argument")
        # Refused now rather than at the first message: quoted as that message will be, without its
        # text, the catalog answers model_not_found, model_disabled or unsupported_spec.
        quote = await self.clients.quote(
            catalog_pb2.QuoteRequest(
                model_code=model_code,
                input_tokens=estimate_tokens(system_instruction),
                max_output_tokens=DEFAULT_MAX_OUTPUT_TOKENS,
            )
        )
        require_kind(quote, TaskKind.TEXT)
        async with self.db.transaction() as session:
            return await repository.insert_conversation(
                session,
                {
                    "id": new_id("cnv"),
                    "user_id": user_id,
                    "title": title.strip(),
                    "model_code": model_code,
                    "system_instruction": system_instruction,
                },
            )

    async def list_page(self, user_id: str, cursor: str, limit: int) -> tuple[list[ConversationRecord], str]:
        after = decode_cursor(cursor)
        size = page_limit(limit)
        async with self.db.session() as session:
            rows = await repository.list_conversations(session, user_id, after=after, limit=size + 1)
        return split_page(rows, size, lambda r: encode_cursor(r.updated_at, r.id))

    async def get(self, user_id: str, conversation_id: str) -> tuple[ConversationRecord, list[MessageRecord]]:
        async with self.db.session() as session:
            row = await repository.get_user_conversation(session, user_id, conversation_id)
            if row is None:
                raise NotFound("conversation not found", code="conversation_not_found")
            return row, list(await repository.messages_of(session, conversation_id))

    async def send(
        self,
        identity: Identity,
        conversation_id: str,
        content: str,
        *,
        idempotency_key: str = "",
        model_code: str = "",
        max_output_tokens: int = 0,
    ) -> AsyncIterator[Streamed]:
        if not content.strip():
            raise InvalidArgument("the message is empty", code="invalid_argument", field="content")
        if len(content) > MAX_MESSAGE:
            raise InvalidArgument(
                f"messages are limited to {MAX_MESSAGE} characters", code="message_too_long"
            )
        user_id = identity.user_id
        async with self.db.session() as session:
            conversation = await repository.get_user_conversation(session, user_id, conversation_id)
            if conversation is None:
                raise NotFound("conversation not found", code="conversation_not_found")
            if idempotency_key:
                earlier = await repository.find_message_by_key(session, user_id, idempotency_key)
                if earlier is not None:
                    if (
                        earlier.conversation_id != conversation_id
                        or earlier.status == MessageStatus.STREAMING
                    ):
                        raise FailedPrecondition(
                            "this Idempotency-Key belongs to another or unfinished message",
                            code="idempotency_conflict",
                        )
                    yield Streamed(final=earlier)
                    return
            history = [
                m
                for m in await repository.messages_of(session, conversation_id)
                if m.status == MessageStatus.COMPLETED
            ]
        model = model_code or conversation.model_code
        chat = (*(ChatMessage(m.role, m.content) for m in history), ChatMessage(MessageRole.USER, content))
        cap = max_output_tokens or DEFAULT_MAX_OUTPUT_TOKENS
        quote = await self.clients.quote(
            catalog_pb2.QuoteRequest(
                model_code=model,
                input_tokens=estimate_tokens(conversation.system_instruction, *(m.text for m in chat)),
                max_output_tokens=cap,
            )
        )
        require_kind(quote, TaskKind.TEXT)
        answer_id = new_id("msg")
        held = hold_id(answer_id, 1)
        price = Credits(quote.total.milli)
        if price.is_positive:
            await self.clients.hold(
                hold_id=held,
                user_id=user_id,
                amount=price,
                ttl=dt.timedelta(seconds=self.settings.hold_ttl_seconds),
                reference_type=ledger_pb2.REFERENCE_TYPE_MESSAGE,
                reference_id=answer_id,
                metadata={"model": model, "kind": TaskKind.TEXT},
            )
        # Explicit times: both rows share one transaction (one now()), and history is ordered by time.
        asked_at = dt.datetime.now(dt.UTC)
        try:
            recording = self._owned(held if price.is_positive else None, answer_id, "message_not_recorded")
            async with recording, self.db.transaction() as session:
                asked = await repository.insert_message(
                    session,
                    {
                        "id": new_id("msg"),
                        "conversation_id": conversation_id,
                        "user_id": user_id,
                        "role": MessageRole.USER,
                        "content": content,
                        "status": MessageStatus.COMPLETED,
                        "created_at": asked_at,
                    },
                )
                answer = await repository.insert_message(
                    session,
                    {
                        "id": answer_id,
                        "conversation_id": conversation_id,
                        "user_id": user_id,
                        "role": MessageRole.ASSISTANT,
                        "status": MessageStatus.STREAMING,
                        "model_code": model,
                        "price_milli": price.milli,
                        "quote": quote.SerializeToString(),
                        "hold_id": held if price.is_positive else None,
                        "idempotency_key": idempotency_key or None,
                        "created_at": asked_at + dt.timedelta(microseconds=1),
                    },
                )
                await repository.update_conversation(
                    session, conversation_id, {"title": conversation.title or content.strip()[:60]}
                )
        except IntegrityError as exc:
            raise FailedPrecondition(
                "this Idempotency-Key is already in use", code="idempotency_conflict"
            ) from exc
        yield Streamed(user_message=asked)

        job = ProviderJob(
            kind=TaskKind.TEXT,
            model=quote.channel.upstream_model_id or model,
            system_instruction=conversation.system_instruction,
            max_output_tokens=cap,
            messages=chat,
            task_id=answer_id,
        )
        provider = self.providers.for_channel(quote.channel)
        parts: list[str] = []
        usage: Usage | None = None
        error: ProviderError | None = None
        try:
            async for chunk in provider.stream_text(job):
                if chunk.text:
                    parts.append(chunk.text)
                    yield Streamed(delta=chunk.text, message_id=answer_id)
                if chunk.usage is not None:
                    usage = chunk.usage
        except ProviderError as exc:
            error = exc
        finally:
            # Also reached when the client goes away mid-stream: the hold is settled either way (by
            # the answer's `tasks.completed`, or released here when its end cannot be recorded).
            async with self._owned(answer.hold_id, answer_id, "message_not_finished", finished=True):
                final = await self._finish(answer, quote, "".join(parts), usage, error)
        yield Streamed(final=final)

    def _owned(
        self, held: str | None, message_id: str, reason: str, *, finished: bool = False
    ) -> AbstractAsyncContextManager[None]:
        """Releases `held` if recording its message (or, `finished`, the message's end, whose event
        settles the hold) fails, unless that was recorded after all."""
        if held is None:
            return contextlib.nullcontext()

        async def recorded() -> bool:
            async with self.db.session() as session:
                row = await repository.get_message(session, message_id)
            return row is not None and (not finished or row.status != MessageStatus.STREAMING)

        return owned_or_undone(
            f"hold {held}", owned=recorded, undo=lambda: self.clients.release(hold_id=held, reason=reason)
        )

    async def _finish(
        self,
        answer: MessageRecord,
        quote: catalog_pb2.QuoteSnapshot,
        text: str,
        usage: Usage | None,
        error: ProviderError | None,
    ) -> MessageRecord:
        succeeded = error is None and usage is not None
        values: dict[str, Any] = {
            "content": text,
            "status": MessageStatus.COMPLETED if succeeded else MessageStatus.FAILED,
        }
        if succeeded and usage is not None:
            values.update(
                input_tokens=usage.input_tokens,
                output_tokens=usage.output_tokens,
                charge_milli=token_charge(quote, usage.input_tokens, usage.output_tokens).milli,
            )
        else:
            code, message = (
                (error.code, error.message) if error else ("interrupted", "the answer was interrupted")
            )
            values.update(error_code=code, error_message=message)
        async with self.db.transaction() as session:
            row = await repository.finish_message(session, answer.id, values)
            if row is None:
                found = await repository.find_message_by_key(
                    session, answer.user_id, answer.idempotency_key or ""
                )
                return found or answer
            if row.hold_id:
                await events.message_completed(
                    session,
                    self.outbox,
                    message=row,
                    status=TaskStatus.SUCCEEDED if succeeded else TaskStatus.FAILED,
                )
            await repository.update_conversation(session, row.conversation_id, {})
        return row
