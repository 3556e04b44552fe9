"""The rules of the generation service, pure of transport.

`Generation` orchestrates what spans remote calls and transactions (quote → hold → record, with a
compensating release when recording fails, `kit.compensation`); the functions below it take a session,
only flush, and are shared with the worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import io
import json
import logging
import math
import uuid
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import asdict, dataclass, field
from typing import Any

from PIL import Image, UnidentifiedImageError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from atelier.catalog.v1 import catalog_pb2
from atelier.common.v1 import common_pb2
from atelier.ledger.v1 import ledger_pb2
from kit.compensation import owned_or_undone
from kit.cursors import decode_cursor, encode_cursor, page_limit, split_page
from kit.db import Database
from kit.errors import DomainError, FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from kit.idempotency import same_request
from kit.identity import Identity
from kit.money import Credits
from kit.outbox import Outbox
from services.generation import events, metrics, repository, views
from services.generation.blobs import Blobs
from services.generation.clients import Clients
from services.generation.models import tasks
from services.generation.records import OutputRecord, TaskRecord, UploadRecord
from services.generation.settings import GenerationSettings
from services.generation.values import (
    FINAL_STATUSES,
    OPEN_STATUSES,
    InputRole,
    TaskKind,
    TaskStatus,
)

log = logging.getLogger(__name__)

# The input role each capability needs (reference images may accompany any capability).
CAPABILITY_ROLES = {
    "first_frame": InputRole.FIRST_FRAME,
    "image_to_video": InputRole.FIRST_FRAME,
    "reference_image": InputRole.REFERENCE,
    "image_edit": InputRole.EDIT,
    "product_image": InputRole.PRODUCT,
}
UPLOAD_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}
MAX_PROMPT = 4000
MAX_INPUTS = 16
MAX_N = 10


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


def task_id_for(user_id: str, idempotency_key: str) -> str:
    """The id of the task a user's Idempotency-Key names. Deterministic, so a retry after a crash between
    the ledger hold and the task's commit holds the same transfer again (idempotently) and records the task
    that owns it, instead of leaving the first hold orphaned until it expires."""
    digest = hashlib.sha256(f"{user_id}\x00{idempotency_key}".encode()).hexdigest()
    return f"tsk_{digest[:32]}"


def hold_id(task_id: str, attempt: int) -> str:
    return f"hold:{task_id}:{attempt}"


def require_kind(quote: catalog_pb2.QuoteSnapshot, kind: TaskKind) -> None:
    """The quoted model makes `kind` (an image task needs an image model, Copy Studio a text one)."""
    # A quote that does not name its kind (UNSPECIFIED) is not checked here.
    if quote.kind != common_pb2.MODEL_KIND_UNSPECIFIED and quote.kind != views.KINDS[kind]:
        raise InvalidArgument(f"{quote.model_code} is not a {kind} model", code="unsupported_spec", kind=kind)


def token_charge(quote: catalog_pb2.QuoteSnapshot, input_tokens: int, output_tokens: int) -> Credits:
    """Token usage priced per 1k tokens, rounded up to the milli-credit and never above the hold."""
    raw = (
        input_tokens * quote.input_price_per_1k_tokens.milli
        + output_tokens * quote.output_price_per_1k_tokens.milli
    )
    return Credits(min(-(-raw // 1000), quote.total.milli))


def estimate_tokens(*texts: str) -> int:
    return max(1, math.ceil(sum(len(t) for t in texts) / 4))


@dataclass(frozen=True)
class InputSpec:
    # An InputSource and an InputRole, as the caller sent them (`validate` checks them).
    source: str
    id: str
    role: str


@dataclass(frozen=True)
class TaskSpec:
    # A TaskKind as the caller sent it (`validate` checks it).
    kind: str
    model_code: str
    prompt: str = ""
    ratio: str = ""
    resolution: str = ""
    duration_seconds: int = 0
    n: int = 0
    capability: str = ""
    inputs: tuple[InputSpec, ...] = ()
    internal: bool = False
    run_id: str = ""
    step_key: str = ""
    system_instruction: str = ""
    max_output_tokens: int = 0
    idempotency_key: str = ""

    def fingerprint(self) -> str:
        body = asdict(self)
        body.pop("idempotency_key")
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class TaskView:
    task: TaskRecord
    outputs: Sequence[OutputRecord] = field(default_factory=tuple)


def validate(spec: TaskSpec) -> TaskKind:
    """What needs no other service: shape, sizes and the capability/input pairing. The task's kind."""
    if spec.kind not in tuple(TaskKind):
        raise InvalidArgument("kind must be text, image or video", code="invalid_kind")
    kind = TaskKind(spec.kind)
    if not spec.model_code:
        raise InvalidArgument("model_code is required", code="invalid_argument", field="model_code")
    if kind == TaskKind.TEXT and not spec.internal:
        raise InvalidArgument("text is generated through Copy Studio conversations", code="invalid_kind")
    if not spec.prompt.strip():
        raise InvalidArgument("prompt is required", code="invalid_argument", field="prompt")
    if len(spec.prompt) > MAX_PROMPT:
        raise InvalidArgument(f"prompt is longer than {MAX_PROMPT} characters", code="prompt_too_long")
    if not 0 <= spec.n <= MAX_N:
        raise InvalidArgument(f"n must be between 1 and {MAX_N}", code="unsupported_spec", field="n")
    if spec.n > 1 and kind != TaskKind.IMAGE:
        raise InvalidArgument("only image tasks produce several outputs", code="unsupported_spec", field="n")
    if spec.duration_seconds < 0 or (spec.duration_seconds and kind != TaskKind.VIDEO):
        raise InvalidArgument("duration applies to video tasks", code="unsupported_spec", field="duration")
    if len(spec.inputs) > MAX_INPUTS:
        raise InvalidArgument(f"at most {MAX_INPUTS} input images", code="unsupported_spec")
    if spec.internal and not spec.run_id:
        raise InvalidArgument("an internal task names its workflow run", code="invalid_argument")
    if spec.capability:
        needed = CAPABILITY_ROLES.get(spec.capability)
        if needed is None:
            raise InvalidArgument(
                f"unknown capability {spec.capability!r}",
                code="unsupported_capability",
                allowed=",".join(CAPABILITY_ROLES),
            )
        if not any(i.role == needed for i in spec.inputs):
            raise FailedPrecondition(
                f"{spec.capability} needs an input image with role {needed}",
                code="missing_input",
                role=needed,
            )
    for item in spec.inputs:
        if item.role not in tuple(InputRole) or not item.id:
            raise InvalidArgument("each input names an upload or output and a role", code="invalid_input")
        if item.role != InputRole.REFERENCE and item.role != CAPABILITY_ROLES.get(spec.capability):
            raise InvalidArgument(
                f"an input with role {item.role} needs the matching capability", code="unsupported_capability"
            )
    return kind


async def check_inputs(session: AsyncSession, user_id: str, inputs: Sequence[InputSpec]) -> None:
    """Every input is an image of the caller's own, an upload or an output (others are reported missing,
    not forbidden; an upload is always an image)."""
    for item in inputs:
        found = await repository.get_input(session, item.source, item.id, user_id=user_id)
        if found is None or not found.mime_type.startswith("image/"):
            raise FailedPrecondition(
                f"input image {item.id} was not found", code="missing_input", input=item.id
            )


async def finish_task(
    session: AsyncSession,
    outbox: Outbox,
    blobs: Blobs,
    task_id: str,
    *,
    status: TaskStatus,
    from_statuses: Sequence[TaskStatus] = OPEN_STATUSES,
    error: tuple[str, str] | None = None,
    charge: Credits | None = None,
    outputs: Sequence[dict[str, Any]] = (),
    usage: tuple[int, int] | None = None,
    cancel_requested: bool | None = None,
) -> TaskRecord | None:
    """Moves an open task to its final status (compare-and-set: None when another writer finished it
    first), stores its outputs and announces `tasks.completed` in the same transaction."""
    values: dict[str, Any] = {"status": status, "finished_at": dt.datetime.now(dt.UTC)}
    if status == TaskStatus.SUCCEEDED:
        values["progress"] = 100
        values["charge_milli"] = charge.milli if charge is not None else tasks.c.price_milli
    if error is not None:
        values["error_code"], values["error_message"] = error
    if usage is not None:
        values["input_tokens"], values["output_tokens"] = usage
    if cancel_requested is not None:
        values["cancel_requested"] = cancel_requested
    row = await repository.transition(session, task_id, from_statuses=from_statuses, values=values)
    if row is None:
        return None
    metrics.task_finished(session, row.model_code, row.kind, status)
    await repository.insert_outputs(session, outputs)
    output_rows = (await repository.outputs_of(session, [task_id]))[task_id]
    await events.task_completed(session, outbox, row, output_rows, blobs)
    return row


class Generation:
    def __init__(
        self,
        db: Database,
        outbox: Outbox,
        clients: Clients,
        blobs: Blobs,
        settings: GenerationSettings,
    ) -> None:
        self.db = db
        self.outbox = outbox
        self.clients = clients
        self.blobs = blobs
        self.settings = settings

    def deadline_for(self, kind: TaskKind) -> dt.timedelta:
        seconds = {
            TaskKind.TEXT: self.settings.text_deadline_seconds,
            TaskKind.IMAGE: self.settings.image_deadline_seconds,
            TaskKind.VIDEO: self.settings.video_deadline_seconds,
        }[kind]
        return dt.timedelta(seconds=seconds)

    def hold_ttl(self, kind: TaskKind) -> dt.timedelta:
        # Longer than the task may live, so the ledger never expires a hold a task still needs.
        return max(dt.timedelta(seconds=self.settings.hold_ttl_seconds), self.deadline_for(kind) * 2)

    # -- tasks -----------------------------------------------------------------------------------

    async def submit_task(
        self, identity: Identity, spec: TaskSpec, *, trace_id: str = ""
    ) -> tuple[TaskView, bool]:
        """Quote, hold, record: refused with nothing created and nothing held, or the task and its
        job in one transaction. A replayed idempotency key returns the first task."""
        kind = validate(spec)
        fingerprint = spec.fingerprint()
        async with self.db.transaction() as session:
            if spec.idempotency_key:
                replay = await self._replay(session, identity.user_id, spec.idempotency_key, fingerprint)
                if replay is not None:
                    return replay, False
            await check_inputs(session, identity.user_id, spec.inputs)

        quote = await self.clients.quote(
            catalog_pb2.QuoteRequest(
                model_code=spec.model_code,
                ratio=spec.ratio,
                resolution=spec.resolution,
                duration_seconds=spec.duration_seconds,
                n=spec.n,
                capability=spec.capability,
                input_image_count=len(spec.inputs),
                input_tokens=estimate_tokens(spec.prompt, spec.system_instruction)
                if kind == TaskKind.TEXT
                else 0,
                max_output_tokens=spec.max_output_tokens,
                internal=spec.internal,
            )
        )
        require_kind(quote, kind)
        task_id = (
            task_id_for(identity.user_id, spec.idempotency_key) if spec.idempotency_key else new_id("tsk")
        )
        attempt = 1
        price = Credits(0) if spec.internal else Credits(quote.total.milli)
        now = dt.datetime.now(dt.UTC)
        values = {
            "id": task_id,
            "user_id": identity.user_id,
            "kind": kind,
            "model_code": spec.model_code,
            "status": TaskStatus.QUEUED,
            "prompt": spec.prompt,
            "ratio": quote.ratio or spec.ratio,
            "resolution": quote.resolution or spec.resolution,
            "duration_seconds": quote.duration_seconds or spec.duration_seconds,
            "n": max(1, quote.n or spec.n),
            "capability": spec.capability,
            "inputs": [asdict(i) for i in spec.inputs],
            "system_instruction": spec.system_instruction,
            "max_output_tokens": spec.max_output_tokens,
            "quote": quote.SerializeToString(),
            "price_milli": price.milli,
            "hold_id": None,
            "internal": spec.internal,
            "run_id": spec.run_id or None,
            "step_key": spec.step_key or None,
            "attempt": attempt,
            "idempotency_key": spec.idempotency_key or None,
            "request_hash": fingerprint,
            "trace_id": trace_id,
            "deadline_at": now + self.deadline_for(kind),
            "created_at": now,
            "updated_at": now,
        }
        held: str | None = None
        if not spec.internal and price.is_positive:
            held = await self._hold(task_id, attempt, identity.user_id, price, spec)
        try:
            async with self._owned(held, task_id):
                values["hold_id"] = held
                async with self.db.transaction() as session:
                    row = await repository.insert_task(session, values)
                    await events.job_requested(session, self.outbox, row)
        except IntegrityError:
            if spec.idempotency_key:
                # A concurrent submission with the same key won the race: answer with its task.
                async with self.db.transaction() as session:
                    replay = await self._replay(session, identity.user_id, spec.idempotency_key, fingerprint)
                if replay is not None:
                    return replay, False
            raise
        metrics.task_submitted(spec.model_code, kind)
        return TaskView(row), True

    def _owned(self, held: str | None, task_id: str) -> AbstractAsyncContextManager[None]:
        """Releases `held` if recording its task fails, unless a task owns it after all: the same key's
        concurrent submission (same id, so same hold) or this one, if its commit went through before its
        connection broke."""
        if held is None:
            return contextlib.nullcontext()

        async def recorded() -> bool:
            async with self.db.session() as session:
                return await repository.get_task(session, task_id) is not None

        return owned_or_undone(
            f"hold {held}",
            owned=recorded,
            undo=lambda: self.clients.release(hold_id=held, reason="submission_not_recorded"),
        )

    async def _hold(self, task_id: str, attempt: int, user_id: str, price: Credits, spec: TaskSpec) -> str:
        """Hold the price under the task's hold id; the id held. The id follows from the task id (so from
        the Idempotency-Key): a retry after a crash adopts the first try's hold. Two cases need a new id:
        the first try's hold was released (its task was not recorded), or it was refused (the ledger
        remembers a refused id, and the retry may come after a recharge)."""

        async def hold(held: str) -> ledger_pb2.HoldResponse:
            return await self.clients.hold(
                hold_id=held,
                user_id=user_id,
                amount=price,
                ttl=self.hold_ttl(TaskKind(spec.kind)),
                reference_type=ledger_pb2.REFERENCE_TYPE_TASK,
                reference_id=task_id,
                metadata={"model": spec.model_code, "kind": spec.kind},
            )

        first = hold_id(task_id, attempt)
        fresh = f"{first}:{uuid.uuid4().hex[:8]}"
        try:
            response = await hold(first)
        except DomainError as exc:
            if exc.code != "insufficient_balance":
                raise
            await hold(fresh)
            return fresh
        spent = response.HasField("hold") and response.hold.status not in (
            ledger_pb2.TRANSFER_STATUS_UNSPECIFIED,
            ledger_pb2.TRANSFER_STATUS_PENDING,
        )
        if response.replayed and spent:
            await hold(fresh)
            return fresh
        return first

    async def _replay(
        self, session: AsyncSession, user_id: str, key: str, fingerprint: str
    ) -> TaskView | None:
        row = await repository.find_by_idempotency_key(session, user_id, key)
        if row is None:
            return None
        same_request(row, fingerprint, "this Idempotency-Key was used for a different request")
        outputs = await repository.outputs_of(session, [row.id])
        return TaskView(row, outputs[row.id])

    async def get_task(self, user_id: str | None, task_id: str) -> TaskView:
        """The task, if `user_id` owns it (None: any owner, for admins)."""
        async with self.db.session() as session:
            row = await repository.get_user_task(session, user_id, task_id)
            if row is None:
                raise NotFound("task not found", code="task_not_found")
            outputs = await repository.outputs_of(session, [row.id])
        return TaskView(row, outputs[row.id])

    async def list_tasks(
        self,
        user_id: str,
        *,
        kind: TaskKind | None = None,
        status: TaskStatus | None = None,
        model_code: str | None = None,
        include_internal: bool = False,
        cursor: str = "",
        limit: int = 0,
    ) -> tuple[list[TaskView], str]:
        after = decode_cursor(cursor)
        size = page_limit(limit)
        async with self.db.session() as session:
            rows = await repository.list_tasks(
                session,
                user_id,
                kind=kind,
                status=status,
                model_code=model_code,
                include_internal=include_internal,
                after=after,
                limit=size + 1,
            )
            page, next_cursor = split_page(rows, size, lambda r: encode_cursor(r.created_at, r.id))
            outputs = await repository.outputs_of(session, [r.id for r in page])
        return [TaskView(r, outputs[r.id]) for r in page], next_cursor

    async def cancel_task(self, user_id: str, task_id: str) -> TaskView:
        """Queued or running: canceled now and announced (the ledger releases the hold). A running
        job notices at its next poll, cancels upstream where it can and discards its result."""
        async with self.db.transaction() as session:
            row = await repository.get_task(session, task_id, lock=True)
            if row is None or row.user_id != user_id:
                raise NotFound("task not found", code="task_not_found")
            if row.status in FINAL_STATUSES:
                if row.status == TaskStatus.CANCELED:
                    return TaskView(row, (await repository.outputs_of(session, [row.id]))[row.id])
                raise FailedPrecondition(f"the task already {row.status}", code="task_finished")
            finished = await finish_task(
                session,
                self.outbox,
                self.blobs,
                task_id,
                status=TaskStatus.CANCELED,
                error=("canceled", "canceled by the user"),
                cancel_requested=True,
            )
            assert finished is not None  # the row lock keeps workers from finishing it meanwhile
        return TaskView(finished)

    # -- uploads ---------------------------------------------------------------------------------

    async def create_upload(
        self, user_id: str, content: bytes, filename: str, content_type: str
    ) -> UploadRecord:
        if not content:
            raise InvalidArgument("the upload is empty", code="invalid_upload")
        if len(content) > self.settings.upload_max_bytes:
            raise InvalidArgument(
                f"uploads are limited to {self.settings.upload_max_bytes // (1024 * 1024)} MB",
                code="upload_too_large",
                limit=self.settings.upload_max_bytes,
            )
        try:
            width, height, mime = await asyncio.to_thread(_inspect_image, content)
        except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
            raise InvalidArgument(
                "the file is not a PNG, JPEG or WebP image", code="unsupported_media_type"
            ) from exc
        if content_type and content_type.split(";")[0].strip().lower() not in (
            mime,
            "application/octet-stream",
        ):
            raise InvalidArgument(
                f"the file is {mime}, not {content_type}", code="unsupported_media_type", detected=mime
            )
        upload_id = new_id("upl")
        key = f"uploads/{user_id}/{upload_id}.{mime.split('/')[1]}"
        await self.blobs.store.put(key, content, mime)
        try:
            async with self.db.transaction() as session:
                return await repository.insert_upload(
                    session,
                    {
                        "id": upload_id,
                        "user_id": user_id,
                        "filename": filename[:255],
                        "mime_type": mime,
                        "width": width,
                        "height": height,
                        "size_bytes": len(content),
                        "sha256": hashlib.sha256(content).hexdigest(),
                        "blob_key": key,
                    },
                )
        except BaseException:
            # No row names this blob, so nothing would ever serve or delete it (shielded: a cancelled
            # call must not leave it behind either).
            await asyncio.shield(self.blobs.store.delete(key))
            raise

    async def get_upload(self, user_id: str, upload_id: str) -> UploadRecord:
        async with self.db.session() as session:
            row = await repository.get_upload(session, upload_id, user_id=user_id)
        if row is None:
            raise NotFound("upload not found", code="upload_not_found")
        return row


def _inspect_image(content: bytes) -> tuple[int, int, str]:
    with Image.open(io.BytesIO(content)) as image:
        kind = image.format or ""
        if kind not in UPLOAD_TYPES:
            raise ValueError(kind)
        image.load()  # decodes fully: a truncated or forged file fails here
        return image.width, image.height, UPLOAD_TYPES[kind]


def require_internal_caller(identity: Identity, caller_service: str, spec: TaskSpec) -> None:
    if spec.internal and caller_service != "workflow":
        raise PermissionDenied(
            "internal tasks are accepted from the workflow service only", code="internal_only"
        )
