"""`GET /v1/files/{path}`: generated images, videos and uploads behind expiring signed URLs.

The link itself is the credential (like an S3 presigned URL), so it works in an <img> or <video> tag;
generation, which owns the files, checks the signature and expiry.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

import grpc
from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import StreamingResponse

from atelier.generation.v1 import generation_pb2, generation_pb2_grpc
from kit.grpc_client import domain_error

router = APIRouter(tags=["files"])


@router.get(
    "/v1/files/{path:path}",
    summary="A stored file named by a signed URL (from a task's outputs or an upload)",
    response_class=StreamingResponse,
)
async def read_file(
    request: Request,
    path: Annotated[str, Path(max_length=400)],
    expires: Annotated[int, Query(ge=0, le=2**40)],
    signature: Annotated[str, Query(pattern=r"^[0-9a-f]{64}$")],
) -> StreamingResponse:
    stub = generation_pb2_grpc.GenerationServiceStub(request.app.state.clients.channels["generation"])
    call = stub.ReadFile(generation_pb2.ReadFileRequest(path=path, expires=expires, signature=signature))
    try:
        first: generation_pb2.ReadFileResponse = await call.read()
    except grpc.aio.AioRpcError as exc:
        raise domain_error(exc) from exc

    async def chunks() -> AsyncIterator[bytes]:
        yield first.data
        while (chunk := await call.read()) is not grpc.aio.EOF:
            yield chunk.data

    filename = path.rsplit("/", 1)[-1]
    return StreamingResponse(
        chunks(),
        media_type=first.content_type,
        headers={
            "Content-Length": str(first.size),
            "Content-Disposition": f'inline; filename="{filename}"',
            "Cache-Control": "private, max-age=300",
        },
    )
