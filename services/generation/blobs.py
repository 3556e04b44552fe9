"""Where outputs and uploads live: an S3 bucket (SeaweedFS in development, any S3 API in production);
a local folder for unit tests only (production refuses it: pods share no disk).

Files are served through expiring signed URLs (`kit.signed_urls`): the gateway asks generation for a
byte range and generation streams it from the store chunk by chunk, so no process holds a whole file.
Large outputs are written as multipart uploads, `PART_SIZE` bytes a part.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import mimetypes
import os
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import ClientError

from kit import signed_urls
from kit.errors import NotFound, PermissionDenied
from services.generation.settings import GenerationSettings

if TYPE_CHECKING:
    from types_aiobotocore_s3.client import S3Client

KEY_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,400}$")
# One message of a streamed read (gRPC's default limit is 4 MiB a message).
CHUNK_SIZE = 1024 * 1024
# Objects above one part are written as multipart uploads of this many bytes a part (S3's minimum is 5 MiB).
PART_SIZE = 8 * 1024 * 1024
PARALLEL_PARTS = 4
_MISSING = {"404", "NoSuchKey", "NotFound"}


class BlobNotFound(Exception):
    pass


@dataclass(frozen=True)
class BlobInfo:
    size: int
    # Opaque and unquoted; it changes whenever the bytes do.
    etag: str
    content_type: str


@dataclass(frozen=True)
class Span:
    """Bytes `start` (inclusive) to `end` (exclusive) of a file."""

    start: int
    end: int

    @property
    def length(self) -> int:
        return self.end - self.start


def byte_span(size: int, first: int | None, last: int | None) -> Span | None:
    """The bytes one HTTP range names in a file of `size` bytes (RFC 9110 §14.1.2): `first`..`last`
    inclusive, `first` to the end, or (no `first`) the last `last` bytes; neither: the whole file.
    None when the range names no byte of the file (the gateway's 416)."""
    if first is None:
        if last is None:
            return Span(0, size)
        return Span(max(0, size - last), size) if last > 0 and size > 0 else None
    end = size if last is None else min(last + 1, size)
    return Span(first, end) if first < end else None


def valid_key(key: str) -> bool:
    """A key names a file inside the store: no absolute path, no `..` segment, nothing exotic."""
    return KEY_PATTERN.fullmatch(key) is not None and ".." not in key.split("/")


def check_key(key: str) -> str:
    """For keys the service makes itself: an invalid one is a bug."""
    if not valid_key(key):
        raise ValueError(f"invalid blob key {key!r}")
    return key


class BlobStore(Protocol):
    async def put(self, key: str, data: bytes, content_type: str) -> None: ...

    async def get(self, key: str) -> bytes:
        """The whole file: for inputs, which are bounded by the upload limit."""
        ...

    async def head(self, key: str) -> BlobInfo: ...

    def open(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """Bytes `start`..`end` (exclusive; None: to the end) in chunks of at most `CHUNK_SIZE`;
        BlobNotFound from the first iteration when the key names no file."""
        ...

    async def delete(self, key: str) -> None:
        """Gone afterwards, whether or not it was there."""
        ...

    async def aclose(self) -> None: ...


class LocalBlobStore:
    """A folder: for unit tests only (the settings refuse it in production)."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def path(self, key: str) -> Path:
        return self.root / check_key(key)

    def _write(self, key: str, data: bytes) -> None:
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Unique per write: two runners of one process may write the same key at once.
        scratch = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
        scratch.write_bytes(data)
        scratch.replace(path)  # atomic: a reader never sees half a file

    def _read(self, key: str, start: int, end: int | None) -> bytes:
        with self.path(key).open("rb") as file:
            file.seek(start)
            return file.read(-1 if end is None else max(0, end - start))

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        await asyncio.to_thread(self._write, key, data)

    async def get(self, key: str) -> bytes:
        return b"".join([chunk async for chunk in self.open(key)])

    async def head(self, key: str) -> BlobInfo:
        try:
            stat = await asyncio.to_thread(self.path(key).stat)
        except FileNotFoundError as exc:
            raise BlobNotFound(key) from exc
        content_type = mimetypes.guess_type(key)[0] or "application/octet-stream"
        return BlobInfo(stat.st_size, f"{stat.st_mtime_ns:x}-{stat.st_size:x}", content_type)

    async def open(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        try:
            data = await asyncio.to_thread(self._read, key, start, end)
        except FileNotFoundError as exc:
            raise BlobNotFound(key) from exc
        for offset in range(0, len(data), CHUNK_SIZE):
            yield data[offset : offset + CHUNK_SIZE]

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self.path(key).unlink, missing_ok=True)

    async def aclose(self) -> None:
        return None


def _missing(error: ClientError) -> bool:
    return error.response.get("Error", {}).get("Code", "") in _MISSING


class S3BlobStore:
    """A bucket behind the S3 API, through aiobotocore (botocore's signing, retries and parsing, on
    aiohttp). Empty keys: botocore's default credential chain (environment, web identity, instance role)."""

    def __init__(
        self,
        *,
        endpoint: str,
        bucket: str,
        region: str,
        access_key: str,
        secret_key: str,
        part_size: int = PART_SIZE,
    ) -> None:
        self.bucket = bucket
        self.part_size = part_size
        self._options: dict[str, Any] = {
            "endpoint_url": endpoint or None,
            "region_name": region,
            "aws_access_key_id": access_key or None,
            "aws_secret_access_key": secret_key or None,
            "config": AioConfig(
                s3={"addressing_style": "path"},
                retries={"mode": "standard", "max_attempts": 3},
                max_pool_connections=32,
            ),
        }
        self._exits = AsyncExitStack()
        self._client: S3Client | None = None
        self._opening = asyncio.Lock()

    async def client(self) -> S3Client:
        """The one client of this store, opened at first use (startup wiring is synchronous)."""
        async with self._opening:
            if self._client is None:
                self._client = await self._exits.enter_async_context(
                    get_session().create_client("s3", **self._options)
                )
        return self._client

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        client = await self.client()
        if len(data) <= self.part_size:
            await client.put_object(
                Bucket=self.bucket, Key=check_key(key), Body=data, ContentType=content_type
            )
        else:
            await self._put_parts(client, check_key(key), data, content_type)

    async def _put_parts(self, client: S3Client, key: str, data: bytes, content_type: str) -> None:
        """A multipart upload, a few parts at a time; aborted (its parts freed) if any part fails."""
        upload = await client.create_multipart_upload(Bucket=self.bucket, Key=key, ContentType=content_type)
        upload_id = upload["UploadId"]
        gate = asyncio.Semaphore(PARALLEL_PARTS)

        async def part(number: int, start: int) -> str:
            async with gate:
                answer = await client.upload_part(
                    Bucket=self.bucket,
                    Key=key,
                    UploadId=upload_id,
                    PartNumber=number,
                    Body=data[start : start + self.part_size],
                )
            return answer["ETag"]

        try:
            async with asyncio.TaskGroup() as group:
                tasks = [
                    group.create_task(part(number, start))
                    for number, start in enumerate(range(0, len(data), self.part_size), start=1)
                ]
            await client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={
                    "Parts": [{"ETag": t.result(), "PartNumber": n} for n, t in enumerate(tasks, start=1)]
                },
            )
        except BaseException:
            await asyncio.shield(
                client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
            )
            raise

    async def get(self, key: str) -> bytes:
        return b"".join([chunk async for chunk in self.open(key)])

    async def head(self, key: str) -> BlobInfo:
        client = await self.client()
        try:
            answer = await client.head_object(Bucket=self.bucket, Key=check_key(key))
        except ClientError as exc:
            if _missing(exc):
                raise BlobNotFound(key) from exc
            raise
        return BlobInfo(
            answer["ContentLength"],
            answer["ETag"].strip('"'),
            answer.get("ContentType") or "application/octet-stream",
        )

    async def open(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        if end is not None and end <= start:
            return
        client = await self.client()
        key = check_key(key)
        try:
            if start or end is not None:
                last = "" if end is None else end - 1
                answer = await client.get_object(Bucket=self.bucket, Key=key, Range=f"bytes={start}-{last}")
            else:
                answer = await client.get_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _missing(exc):
                raise BlobNotFound(key) from exc
            raise
        body = answer["Body"]
        try:
            while chunk := await body.read(CHUNK_SIZE):
                yield chunk
        finally:
            body.close()  # a reader that stops early hands the connection back

    async def delete(self, key: str) -> None:
        client = await self.client()
        await client.delete_object(Bucket=self.bucket, Key=check_key(key))

    async def aclose(self) -> None:
        await self._exits.aclose()
        self._client = None


class Blobs:
    """The store plus its URL signer."""

    def __init__(self, store: BlobStore, *, url_base: str, secret: str, ttl_seconds: int) -> None:
        self.store = store
        self.url_base = url_base
        self.secret = secret
        self.ttl_seconds = ttl_seconds

    @classmethod
    def from_settings(cls, settings: GenerationSettings) -> Blobs:
        store: BlobStore
        if settings.blob_backend == "s3":
            store = S3BlobStore(
                endpoint=settings.s3_endpoint,
                bucket=settings.s3_bucket,
                region=settings.s3_region,
                access_key=settings.s3_access_key,
                secret_key=settings.s3_secret_key,
            )
        else:
            store = LocalBlobStore(settings.blob_root)
        return cls(
            store,
            url_base=settings.blob_url_base or f"{settings.public_url.rstrip('/')}/v1/files",
            secret=settings.blob_url_secret,
            ttl_seconds=settings.blob_url_ttl_seconds,
        )

    def signed_url(self, key: str, *, now: float | None = None) -> tuple[str, dt.datetime]:
        url, expires = signed_urls.sign(
            self.url_base, check_key(key), secret=self.secret, ttl_seconds=self.ttl_seconds, now=now
        )
        return url, dt.datetime.fromtimestamp(expires, dt.UTC)

    def verify(self, key: str, expires: int, signature: str, *, now: float | None = None) -> bool:
        return signed_urls.verify(key, expires, signature, secret=self.secret, now=now)

    def _check_link(self, key: str, expires: int, signature: str) -> None:
        """PermissionDenied for an expired or forged link, NotFound for a key that cannot name a stored
        file (`../`, an absolute path), however it is signed."""
        if not valid_key(key):
            raise NotFound("no such file", code="file_not_found")
        if not self.verify(key, expires, signature):
            raise PermissionDenied("this link has expired or is not valid", code="link_invalid")

    async def read_signed(self, key: str, expires: int, signature: str) -> bytes:
        """The bytes behind a signed URL (see `_check_link` for the refusals)."""
        self._check_link(key, expires, signature)
        try:
            return await self.store.get(key)
        except BlobNotFound as exc:
            raise NotFound("no such file", code="file_not_found") from exc

    async def describe_signed(
        self, key: str, expires: int, signature: str, *, first: int | None, last: int | None
    ) -> tuple[BlobInfo, Span | None]:
        """The file a signed URL names and the bytes a range names in it (`byte_span`), before any byte
        is read (see `_check_link` for the refusals)."""
        self._check_link(key, expires, signature)
        try:
            info = await self.store.head(key)
        except BlobNotFound as exc:
            raise NotFound("no such file", code="file_not_found") from exc
        return info, byte_span(info.size, first, last)

    async def read_span(self, key: str, span: Span) -> AsyncIterator[bytes]:
        """A described file's bytes, chunk by chunk (NotFound if it went in between)."""
        try:
            async for chunk in self.store.open(key, span.start, span.end):
                yield chunk
        except BlobNotFound as exc:
            raise NotFound("no such file", code="file_not_found") from exc

    async def aclose(self) -> None:
        await self.store.aclose()
