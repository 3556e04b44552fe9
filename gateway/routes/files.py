"""`GET` and `HEAD /v1/files/{path}`: generated images, videos and uploads behind expiring signed URLs.

The link itself is the credential (like an S3 presigned URL), so it works in an <img> or <video> tag;
generation, which owns the files, checks the signature and expiry. Downloads stream: generation reads the
asked bytes from the store chunk by chunk and the gateway passes each chunk on, so neither holds a whole
file. A video player seeks with `Range` (206; 416 for a range past the end); `HEAD` describes the file;
`ETag` with `If-None-Match` (304) and `If-Range` let a client reuse what it already has.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any

import grpc
from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import StreamingResponse

from atelier.generation.v1 import generation_pb2, generation_pb2_grpc
from gateway.problems import Problem
from kit.grpc_client import domain_error

router = APIRouter(tags=["files"])

_RANGE = re.compile(r"bytes=(\d*)-(\d*)")
FilePath = Annotated[str, Path(max_length=400)]
Expires = Annotated[int, Query(ge=0, le=2**40)]
Signature = Annotated[str, Query(pattern=r"^[0-9a-f]{64}$")]


@dataclass(frozen=True)
class Link:
    path: str
    expires: int
    signature: str


def requested_range(header: str | None) -> tuple[int | None, int | None] | None:
    """The one byte range a `Range` header asks for, as (first, last) with either left open; None to
    serve the whole file. A header that is not one well-formed bytes range (several ranges, another
    unit, `last` before `first`) is ignored, as RFC 9110 §14.2 allows."""
    match = _RANGE.fullmatch((header or "").strip())
    if match is None:
        return None
    first, last = (int(group) if group else None for group in match.groups())
    if first is None and last is None:
        return None
    if first is not None and last is not None and last < first:
        return None
    return first, last


def etag_listed(header: str, etag: str) -> bool:
    """`If-None-Match`: `*` or a list of tags, compared weakly (RFC 9110 §13.1.2)."""
    tags = {tag.strip().removeprefix("W/") for tag in header.split(",")}
    return "*" in tags or etag in tags


async def _open(
    request: Request, link: Link, span: tuple[int | None, int | None] | None, *, describe_only: bool
) -> tuple[Any, generation_pb2.ReadFileRangeResponse]:
    """The read call and its first message (the file and the range served); errors as problem+json."""
    stub = generation_pb2_grpc.GenerationServiceStub(request.app.state.clients.channels["generation"])
    first, last = span or (None, None)
    call = stub.ReadFileRange(
        generation_pb2.ReadFileRangeRequest(
            path=link.path,
            expires=link.expires,
            signature=link.signature,
            first=first,
            last=last,
            describe_only=describe_only,
        )
    )
    try:
        head: generation_pb2.ReadFileRangeResponse = await call.read()
    except grpc.aio.AioRpcError as exc:
        raise domain_error(exc) from exc
    return call, head


def _headers(link: Link, file: generation_pb2.StoredFile) -> dict[str, str]:
    return {
        "ETag": f'"{file.etag}"',
        "Accept-Ranges": "bytes",
        "Content-Disposition": f'inline; filename="{link.path.rsplit("/", 1)[-1]}"',
        "Cache-Control": "private, max-age=300",
    }


async def _serve(request: Request, link: Link) -> Response:
    span = requested_range(request.headers.get("range"))
    if_none_match = request.headers.get("if-none-match")
    if_range = request.headers.get("if-range")
    if request.method == "HEAD" or if_none_match or if_range:
        _, described = await _open(request, link, None, describe_only=True)
        headers = _headers(link, described.file)
        if if_none_match and etag_listed(if_none_match, headers["ETag"]):
            return Response(status_code=304, headers=headers)
        if request.method == "HEAD":
            headers["Content-Length"] = str(described.file.size)
            return Response(media_type=described.file.content_type, headers=headers)
        if if_range and if_range != headers["ETag"]:
            span = None  # the client's copy is of other bytes: send the whole file
    call, head = await _open(request, link, span, describe_only=False)
    size = head.file.size
    if not head.satisfiable:
        call.cancel()
        raise Problem(
            416,
            "range_not_satisfiable",
            f"the file has {size} bytes",
            headers={"Content-Range": f"bytes */{size}"},
        )
    headers = {**_headers(link, head.file), "Content-Length": str(head.end - head.start)}
    status = 200
    if span is not None:
        status = 206
        headers["Content-Range"] = f"bytes {head.start}-{head.end - 1}/{size}"

    async def chunks() -> AsyncIterator[bytes]:
        try:
            while (message := await call.read()) is not grpc.aio.EOF:
                yield message.data
        finally:
            call.cancel()  # a client that leaves early stops generation's read too

    return StreamingResponse(chunks(), status_code=status, media_type=head.file.content_type, headers=headers)


FILE_RESPONSES: dict[int | str, dict[str, Any]] = {
    206: {"description": "The byte range asked for with `Range`"},
    304: {"description": "The client's copy (`If-None-Match`) is current"},
    416: {"description": "The range names no byte of the file (problem+json; `Content-Range: bytes */size`)"},
}


@router.get(
    "/v1/files/{path:path}",
    summary="A stored file named by a signed URL (from a task's outputs or an upload); `Range` to seek",
    response_class=StreamingResponse,
    responses=FILE_RESPONSES,
)
async def read_file(request: Request, path: FilePath, expires: Expires, signature: Signature) -> Response:
    return await _serve(request, Link(path, expires, signature))


@router.head(
    "/v1/files/{path:path}",
    summary="A signed URL's file described: size, type and ETag, without its bytes",
    responses={304: FILE_RESPONSES[304]},
)
async def describe_file(request: Request, path: FilePath, expires: Expires, signature: Signature) -> Response:
    return await _serve(request, Link(path, expires, signature))
