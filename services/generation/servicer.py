"""gRPC transport for the generation service: protobuf in, a domain call, protobuf out."""

from __future__ import annotations

import mimetypes
from collections.abc import AsyncIterator
from typing import Any

from atelier.common.v1 import common_pb2
from atelier.generation.v1 import generation_pb2, generation_pb2_grpc
from kit.identity import caller, calling_service, require_verified
from kit.telemetry import current_trace_id
from services.generation import views
from services.generation.blobs import Blobs
from services.generation.conversations import Conversations
from services.generation.service import Generation, InputSpec, TaskSpec, TaskView, require_internal_caller
from services.generation.values import InputSource

Context = Any  # grpc.aio.ServicerContext (grpc ships no types)
FILE_CHUNK = 1024 * 1024


class GenerationServicer(generation_pb2_grpc.GenerationServiceServicer):
    def __init__(self, generation: Generation, conversations: Conversations, blobs: Blobs) -> None:
        self.generation = generation
        self.conversations = conversations
        self.blobs = blobs

    def _task(self, view: TaskView) -> generation_pb2.Task:
        return views.task(view.task, view.outputs, self.blobs)

    # -- tasks -----------------------------------------------------------------------------------

    async def SubmitTask(
        self, request: generation_pb2.SubmitTaskRequest, context: Context
    ) -> generation_pb2.SubmitTaskResponse:
        identity = require_verified(context)
        spec = TaskSpec(
            kind=views.KIND_NAMES.get(request.kind, ""),
            model_code=request.model_code,
            prompt=request.prompt,
            ratio=request.ratio,
            resolution=request.resolution,
            duration_seconds=request.duration_seconds,
            n=request.n,
            capability=request.capability,
            inputs=tuple(
                InputSpec(
                    source=item.WhichOneof("source") or InputSource.UPLOAD,
                    id=getattr(item, item.WhichOneof("source") or InputSource.UPLOAD),
                    role=views.ROLE_NAMES.get(item.role, ""),
                )
                for item in request.inputs
            ),
            internal=request.internal,
            run_id=request.workflow_step.run_id,
            step_key=request.workflow_step.step_key,
            system_instruction=request.system_instruction,
            max_output_tokens=request.max_output_tokens,
            idempotency_key=request.idempotency_key,
        )
        require_internal_caller(identity, calling_service(context), spec)
        view, created = await self.generation.submit_task(identity, spec, trace_id=current_trace_id())
        return generation_pb2.SubmitTaskResponse(task=self._task(view), created=created)

    async def GetTask(
        self, request: generation_pb2.GetTaskRequest, context: Context
    ) -> generation_pb2.GetTaskResponse:
        identity = caller(context)
        # Admins read any task (the spend debugger); everyone else only their own.
        owner = None if identity.is_admin else identity.user_id
        return generation_pb2.GetTaskResponse(
            task=self._task(await self.generation.get_task(owner, request.task_id))
        )

    async def ListTasks(
        self, request: generation_pb2.ListTasksRequest, context: Context
    ) -> generation_pb2.ListTasksResponse:
        identity = caller(context)
        tasks, cursor = await self.generation.list_tasks(
            identity.user_id,
            kind=views.KIND_NAMES.get(request.kind),
            status=views.STATUS_NAMES.get(request.status),
            model_code=request.model_code or None,
            include_internal=request.include_internal,
            cursor=request.page.cursor,
            limit=request.page.limit,
        )
        return generation_pb2.ListTasksResponse(
            tasks=[self._task(t) for t in tasks], page=common_pb2.PageInfo(next_cursor=cursor)
        )

    async def CancelTask(
        self, request: generation_pb2.CancelTaskRequest, context: Context
    ) -> generation_pb2.CancelTaskResponse:
        identity = caller(context)
        view = await self.generation.cancel_task(identity.user_id, request.task_id)
        return generation_pb2.CancelTaskResponse(task=self._task(view))

    # -- files -----------------------------------------------------------------------------------

    async def ReadFile(
        self, request: generation_pb2.ReadFileRequest, context: Context
    ) -> AsyncIterator[generation_pb2.ReadFileResponse]:
        data = await self.blobs.read_signed(request.path, request.expires, request.signature)
        content_type = mimetypes.guess_type(request.path)[0] or "application/octet-stream"
        yield generation_pb2.ReadFileResponse(
            data=data[:FILE_CHUNK], content_type=content_type, size=len(data)
        )
        for start in range(FILE_CHUNK, len(data), FILE_CHUNK):
            yield generation_pb2.ReadFileResponse(data=data[start : start + FILE_CHUNK])

    # -- uploads ---------------------------------------------------------------------------------

    async def CreateUpload(
        self, request: generation_pb2.CreateUploadRequest, context: Context
    ) -> generation_pb2.CreateUploadResponse:
        identity = caller(context)
        row = await self.generation.create_upload(
            identity.user_id, request.content, request.filename, request.content_type
        )
        return generation_pb2.CreateUploadResponse(upload=views.upload(row, self.blobs))

    async def GetUpload(
        self, request: generation_pb2.GetUploadRequest, context: Context
    ) -> generation_pb2.GetUploadResponse:
        identity = caller(context)
        row = await self.generation.get_upload(identity.user_id, request.upload_id)
        return generation_pb2.GetUploadResponse(upload=views.upload(row, self.blobs))

    # -- Copy Studio -----------------------------------------------------------------------------

    async def CreateConversation(
        self, request: generation_pb2.CreateConversationRequest, context: Context
    ) -> generation_pb2.CreateConversationResponse:
        identity = caller(context)
        row = await self.conversations.create(
            identity.user_id, request.model_code, request.title, request.system_instruction
        )
        return generation_pb2.CreateConversationResponse(conversation=views.conversation(row))

    async def ListConversations(
        self, request: generation_pb2.ListConversationsRequest, context: Context
    ) -> generation_pb2.ListConversationsResponse:
        identity = caller(context)
        rows, cursor = await self.conversations.list_page(
            identity.user_id, request.page.cursor, request.page.limit
        )
        return generation_pb2.ListConversationsResponse(
            conversations=[views.conversation(r) for r in rows], page=common_pb2.PageInfo(next_cursor=cursor)
        )

    async def GetConversation(
        self, request: generation_pb2.GetConversationRequest, context: Context
    ) -> generation_pb2.GetConversationResponse:
        identity = caller(context)
        row, messages = await self.conversations.get(identity.user_id, request.conversation_id)
        return generation_pb2.GetConversationResponse(conversation=views.conversation(row, messages))

    async def SendMessage(
        self, request: generation_pb2.SendMessageRequest, context: Context
    ) -> AsyncIterator[generation_pb2.SendMessageResponse]:
        identity = require_verified(context)
        stream = self.conversations.send(
            identity,
            request.conversation_id,
            request.content,
            idempotency_key=request.idempotency_key,
            model_code=request.model_code,
            max_output_tokens=request.max_output_tokens,
        )
        async for item in stream:
            if item.user_message is not None:
                yield generation_pb2.SendMessageResponse(user_message=views.message(item.user_message))
            elif item.final is not None:
                yield generation_pb2.SendMessageResponse(final=views.message(item.final))
            else:
                yield generation_pb2.SendMessageResponse(
                    delta=generation_pb2.MessageDelta(message_id=item.message_id, text=item.delta)
                )

    # -- ranged file reads -----------------------------------------------------------------------

    async def ReadFileRange(
        self, request: generation_pb2.ReadFileRangeRequest, context: Context
    ) -> AsyncIterator[generation_pb2.ReadFileRangeResponse]:
        info, span = await self.blobs.describe_signed(
            request.path,
            request.expires,
            request.signature,
            first=request.first if request.HasField("first") else None,
            last=request.last if request.HasField("last") else None,
        )
        yield generation_pb2.ReadFileRangeResponse(
            file=generation_pb2.StoredFile(size=info.size, etag=info.etag, content_type=info.content_type),
            satisfiable=span is not None,
            start=span.start if span else 0,
            end=span.end if span else 0,
        )
        if span is None or request.describe_only:
            return
        async for chunk in self.blobs.read_span(request.path, span):
            yield generation_pb2.ReadFileRangeResponse(data=chunk)
