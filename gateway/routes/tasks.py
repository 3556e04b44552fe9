"""Tasks, uploads and Copy Studio over HTTP: JSON in, a generation gRPC call, JSON (or SSE) out."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field, model_validator

from atelier.common.v1 import common_pb2
from atelier.generation.v1 import generation_pb2, generation_pb2_grpc
from gateway.auth import CurrentPrincipal, VerifiedPrincipal, WriterPrincipal
from gateway.convert import credits_text, names_by_value
from kit.protoconv import enum_by_name

router = APIRouter(tags=["tasks"])


# Reading needs a signed-in caller; canceling changes things (an API key needs "write"); submitting
# work, uploading and chatting also need a verified email.
Caller = CurrentPrincipal
Writer = WriterPrincipal
Spender = VerifiedPrincipal

# A task is submitted as an image or a video (text is Copy Studio's); listing may ask for any kind.
KINDS = {"image": common_pb2.MODEL_KIND_IMAGE, "video": common_pb2.MODEL_KIND_VIDEO}
ALL_KINDS = enum_by_name(common_pb2.ModelKind)
KIND_NAMES = names_by_value(common_pb2.ModelKind)
STATUSES = enum_by_name(generation_pb2.TaskStatus)
STATUS_NAMES = names_by_value(generation_pb2.TaskStatus)
ROLES = enum_by_name(generation_pb2.InputRole)
ROLE_NAMES = names_by_value(generation_pb2.InputRole)
MESSAGE_STATUS = names_by_value(generation_pb2.MessageStatus)
MESSAGE_ROLE = names_by_value(generation_pb2.MessageRole)


def stub(request: Request) -> generation_pb2_grpc.GenerationServiceStub:
    return generation_pb2_grpc.GenerationServiceStub(request.app.state.clients.channels["generation"])


def stamp(message: Any, name: str) -> str | None:
    return getattr(message, name).ToJsonString() if message.HasField(name) else None


# -- schemas ---------------------------------------------------------------------------------------


class TaskInputIn(BaseModel):
    upload_id: str | None = Field(default=None, max_length=100)
    output_id: str | None = Field(default=None, max_length=100)
    role: Literal["reference", "first_frame", "edit", "product"]

    @model_validator(mode="after")
    def one_source(self) -> TaskInputIn:
        if (self.upload_id is None) == (self.output_id is None):
            raise ValueError("give exactly one of upload_id or output_id")
        return self


class TaskIn(BaseModel):
    kind: Literal["image", "video"]
    model: str = Field(min_length=1, max_length=100)
    prompt: str = Field(min_length=1, max_length=4000)
    ratio: str = Field(default="", max_length=10)
    resolution: str = Field(default="", max_length=20)
    duration_seconds: int = Field(default=0, ge=0, le=600)
    n: int = Field(default=1, ge=1, le=10)
    capability: str = Field(default="", max_length=40)
    inputs: list[TaskInputIn] = Field(default_factory=list, max_length=16)


class ConversationIn(BaseModel):
    model: str = Field(min_length=1, max_length=100)
    title: str = Field(default="", max_length=200)
    system_instruction: str = Field(default="", max_length=4000)


class MessageIn(BaseModel):
    content: str = Field(min_length=1, max_length=8000)
    model: str = Field(default="", max_length=100)
    max_output_tokens: int = Field(default=0, ge=0, le=65536)


# -- views -----------------------------------------------------------------------------------------


def task_json(task: generation_pb2.Task) -> dict[str, Any]:
    return {
        "id": task.id,
        "kind": KIND_NAMES.get(task.kind, ""),
        "model": task.model_code,
        "status": STATUS_NAMES.get(task.status, "queued"),
        "progress": task.progress,
        "prompt": task.prompt,
        "ratio": task.ratio,
        "resolution": task.resolution,
        "duration_seconds": task.duration_seconds,
        "n": task.n,
        "capability": task.capability,
        "inputs": [
            {
                item.WhichOneof("source") or "upload_id": getattr(
                    item, item.WhichOneof("source") or "upload_id"
                ),
                "role": ROLE_NAMES.get(item.role, ""),
            }
            for item in task.inputs
        ],
        "price": credits_text(task.price),
        "outputs": [
            {
                "id": o.id,
                "index": o.index,
                "mime_type": o.mime_type,
                "url": o.url or None,
                "url_expires_at": stamp(o, "url_expires_at"),
                "width": o.width,
                "height": o.height,
                "duration_seconds": o.duration_seconds,
                "text": o.text or None,
                "size_bytes": o.size_bytes,
            }
            for o in task.outputs
        ],
        "error": {"code": task.error.code, "message": task.error.message} if task.HasField("error") else None,
        "created_at": stamp(task, "created_at"),
        "started_at": stamp(task, "started_at"),
        "finished_at": stamp(task, "finished_at"),
    }


def message_json(message: generation_pb2.Message) -> dict[str, Any]:
    return {
        "id": message.id,
        "role": MESSAGE_ROLE.get(message.role, ""),
        "content": message.content,
        "status": MESSAGE_STATUS.get(message.status, ""),
        "model": message.model_code or None,
        "usage": {"input_tokens": message.usage.input_tokens, "output_tokens": message.usage.output_tokens},
        "charge": credits_text(message.charge),
        "error": {"code": message.error.code, "message": message.error.message}
        if message.HasField("error")
        else None,
        "created_at": stamp(message, "created_at"),
    }


def conversation_json(conversation: generation_pb2.Conversation) -> dict[str, Any]:
    return {
        "id": conversation.id,
        "title": conversation.title,
        "model": conversation.model_code,
        "system_instruction": conversation.system_instruction,
        "messages": [message_json(m) for m in conversation.messages],
        "created_at": stamp(conversation, "created_at"),
        "updated_at": stamp(conversation, "updated_at"),
    }


# -- tasks -----------------------------------------------------------------------------------------


@router.post("/v1/tasks", status_code=201, summary="Submit an image or video task (quoted, held, queued)")
async def submit_task(
    body: TaskIn,
    identity: Spender,
    request: Request,
    response: Response,
    idempotency_key: Annotated[str, Header(min_length=1, max_length=200)],
) -> dict[str, Any]:
    answer = await stub(request).SubmitTask(
        generation_pb2.SubmitTaskRequest(
            idempotency_key=idempotency_key,
            kind=KINDS[body.kind],
            model_code=body.model,
            prompt=body.prompt,
            ratio=body.ratio,
            resolution=body.resolution,
            duration_seconds=body.duration_seconds,
            n=body.n,
            capability=body.capability,
            inputs=[
                generation_pb2.TaskInput(role=ROLES[i.role], upload_id=i.upload_id)
                if i.upload_id
                else generation_pb2.TaskInput(role=ROLES[i.role], output_id=i.output_id or "")
                for i in body.inputs
            ],
        ),
        metadata=identity.metadata(),
    )
    if not answer.created:
        response.status_code = 200
    return task_json(answer.task)


@router.get("/v1/tasks", summary="List my tasks, newest first")
async def list_tasks(
    identity: Caller,
    request: Request,
    kind: Literal["image", "video", "text"] | None = None,
    status: Literal["queued", "running", "succeeded", "failed", "canceled"] | None = None,
    model: Annotated[str | None, Query(max_length=100)] = None,
    cursor: Annotated[str, Query(max_length=500)] = "",
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> dict[str, Any]:
    answer = await stub(request).ListTasks(
        generation_pb2.ListTasksRequest(
            page=common_pb2.PageRequest(cursor=cursor, limit=limit),
            kind=ALL_KINDS[kind] if kind else common_pb2.MODEL_KIND_UNSPECIFIED,
            status=STATUSES[status] if status else generation_pb2.TASK_STATUS_UNSPECIFIED,
            model_code=model or "",
        ),
        metadata=identity.metadata(),
    )
    return {"items": [task_json(t) for t in answer.tasks], "next_cursor": answer.page.next_cursor or None}


@router.get("/v1/tasks/{task_id}", summary="One of my tasks")
async def get_task(task_id: str, identity: Caller, request: Request) -> dict[str, Any]:
    answer = await stub(request).GetTask(
        generation_pb2.GetTaskRequest(task_id=task_id), metadata=identity.metadata()
    )
    return task_json(answer.task)


@router.post("/v1/tasks/{task_id}/cancel", summary="Cancel a queued or running task (never charged)")
async def cancel_task(task_id: str, identity: Writer, request: Request) -> dict[str, Any]:
    answer = await stub(request).CancelTask(
        generation_pb2.CancelTaskRequest(task_id=task_id), metadata=identity.metadata()
    )
    return task_json(answer.task)


@router.post(
    "/v1/uploads",
    status_code=201,
    summary="Upload a reference image or product photo (the raw image as the body; PNG, JPEG or WebP)",
)
async def create_upload(
    identity: Spender,
    request: Request,
    content_type: Annotated[str, Header()] = "application/octet-stream",
    filename: Annotated[str, Query(max_length=255)] = "",
) -> dict[str, Any]:
    content = await request.body()
    answer = await stub(request).CreateUpload(
        generation_pb2.CreateUploadRequest(content=content, filename=filename, content_type=content_type),
        metadata=identity.metadata(),
    )
    upload = answer.upload
    return {
        "id": upload.id,
        "mime_type": upload.mime_type,
        "width": upload.width,
        "height": upload.height,
        "size_bytes": upload.size_bytes,
        "sha256": upload.sha256,
        "url": upload.url,
    }


# -- Copy Studio -----------------------------------------------------------------------------------


@router.post(
    "/v1/copy/conversations", status_code=201, tags=["copy"], summary="Start a Copy Studio conversation"
)
async def create_conversation(body: ConversationIn, identity: Spender, request: Request) -> dict[str, Any]:
    answer = await stub(request).CreateConversation(
        generation_pb2.CreateConversationRequest(
            model_code=body.model, title=body.title, system_instruction=body.system_instruction
        ),
        metadata=identity.metadata(),
    )
    return conversation_json(answer.conversation)


@router.get("/v1/copy/conversations", tags=["copy"], summary="My conversations, latest activity first")
async def list_conversations(
    identity: Caller,
    request: Request,
    cursor: Annotated[str, Query(max_length=500)] = "",
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> dict[str, Any]:
    answer = await stub(request).ListConversations(
        generation_pb2.ListConversationsRequest(page=common_pb2.PageRequest(cursor=cursor, limit=limit)),
        metadata=identity.metadata(),
    )
    return {
        "items": [conversation_json(c) for c in answer.conversations],
        "next_cursor": answer.page.next_cursor or None,
    }


@router.get(
    "/v1/copy/conversations/{conversation_id}", tags=["copy"], summary="A conversation with its history"
)
async def get_conversation(conversation_id: str, identity: Caller, request: Request) -> dict[str, Any]:
    answer = await stub(request).GetConversation(
        generation_pb2.GetConversationRequest(conversation_id=conversation_id), metadata=identity.metadata()
    )
    return conversation_json(answer.conversation)


@router.post(
    "/v1/copy/conversations/{conversation_id}/messages",
    tags=["copy"],
    summary="Send a message; the answer streams back as server-sent events (user_message, delta…, final)",
)
async def send_message(
    conversation_id: str,
    body: MessageIn,
    identity: Spender,
    request: Request,
    idempotency_key: Annotated[str, Header(max_length=200)] = "",
) -> StreamingResponse:
    call = stub(request).SendMessage(
        generation_pb2.SendMessageRequest(
            conversation_id=conversation_id,
            idempotency_key=idempotency_key,
            content=body.content,
            model_code=body.model,
            max_output_tokens=body.max_output_tokens,
        ),
        metadata=identity.metadata(),
    )
    # The first item is read before answering, so a refusal (insufficient balance, not found) is a
    # proper problem+json response and not a broken stream.
    iterator = call.__aiter__()
    first = await iterator.__anext__()

    async def events() -> AsyncIterator[bytes]:
        item: generation_pb2.SendMessageResponse | None = first
        while item is not None:
            kind = item.WhichOneof("event")
            if kind == "delta":
                data: dict[str, Any] = {"message_id": item.delta.message_id, "text": item.delta.text}
            elif kind == "user_message":
                data = message_json(item.user_message)
            else:
                data = message_json(item.final)
            yield f"event: {kind}\ndata: {json.dumps(data)}\n\n".encode()
            try:
                item = await iterator.__anext__()
            except StopAsyncIteration:
                item = None

    return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
