"""Where outputs and uploads live: a local folder by default, an S3-compatible bucket as an option.

Files are served through expiring signed URLs (`kit.signed_urls`); the gateway verifies and serves them.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import os
import re
import uuid
from pathlib import Path
from typing import Protocol
from urllib.parse import quote

import httpx

from kit import signed_urls
from kit.errors import NotFound, PermissionDenied
from services.generation.settings import GenerationSettings

KEY_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,400}$")


class BlobNotFound(Exception):
    pass


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

    async def get(self, key: str) -> bytes: ...

    async def delete(self, key: str) -> None:
        """Gone afterwards, whether or not it was there."""
        ...

    async def aclose(self) -> None: ...


class LocalBlobStore:
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

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        await asyncio.to_thread(self._write, key, data)

    async def get(self, key: str) -> bytes:
        try:
            return await asyncio.to_thread(self.path(key).read_bytes)
        except FileNotFoundError as exc:
            raise BlobNotFound(key) from exc

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self.path(key).unlink, missing_ok=True)

    async def aclose(self) -> None:
        return None


class S3BlobStore:
    """An S3-compatible bucket (AWS, MinIO, R2...) over path-style URLs, signed with SigV4."""

    def __init__(self, *, endpoint: str, bucket: str, region: str, access_key: str, secret_key: str) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.bucket = bucket
        self.region = region
        self.access_key = access_key
        self.secret_key = secret_key
        self.client = httpx.AsyncClient(timeout=60.0)

    def _url_path(self, key: str) -> str:
        return f"/{self.bucket}/{quote(check_key(key))}"

    def sign(
        self,
        method: str,
        path: str,
        payload: bytes,
        now: dt.datetime | None = None,
        extra: dict[str, str] | None = None,
    ) -> dict[str, str]:
        """SigV4 headers for a request without a query string."""
        now = now or dt.datetime.now(dt.UTC)
        amz_date = now.strftime("%Y%m%dT%H%M%SZ")
        day = now.strftime("%Y%m%d")
        host = httpx.URL(self.endpoint).netloc.decode()
        payload_hash = hashlib.sha256(payload).hexdigest()
        headers = {
            "host": host,
            "x-amz-content-sha256": payload_hash,
            "x-amz-date": amz_date,
            **(extra or {}),
        }
        names = sorted(headers)
        canonical = "\n".join(
            [
                method,
                path,
                "",
                *(f"{n}:{headers[n].strip()}" for n in names),
                "",
                ";".join(names),
                payload_hash,
            ]
        )
        scope = f"{day}/{self.region}/s3/aws4_request"
        to_sign = "\n".join(
            ["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()]
        )
        key = f"AWS4{self.secret_key}".encode()
        for part in (day, self.region, "s3", "aws4_request"):
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        sig = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        headers["authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={self.access_key}/{scope}, "
            f"SignedHeaders={';'.join(names)}, Signature={sig}"
        )
        del headers["host"]
        return headers

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        path = self._url_path(key)
        headers = self.sign("PUT", path, data, extra={"content-type": content_type})
        response = await self.client.put(self.endpoint + path, content=data, headers=headers)
        response.raise_for_status()

    async def get(self, key: str) -> bytes:
        path = self._url_path(key)
        response = await self.client.get(self.endpoint + path, headers=self.sign("GET", path, b""))
        if response.status_code == 404:
            raise BlobNotFound(key)
        response.raise_for_status()
        return response.content

    async def delete(self, key: str) -> None:
        path = self._url_path(key)
        response = await self.client.delete(self.endpoint + path, headers=self.sign("DELETE", path, b""))
        if response.status_code != 404:
            response.raise_for_status()

    async def aclose(self) -> None:
        await self.client.aclose()


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

    async def read_signed(self, key: str, expires: int, signature: str) -> bytes:
        """The bytes behind a signed URL; PermissionDenied for an expired or forged link, NotFound for a
        key that cannot name a stored file (`../`, an absolute path), however it is signed."""
        if not valid_key(key):
            raise NotFound("no such file", code="file_not_found")
        if not self.verify(key, expires, signature):
            raise PermissionDenied("this link has expired or is not valid", code="link_invalid")
        try:
            return await self.store.get(key)
        except BlobNotFound as exc:
            raise NotFound("no such file", code="file_not_found") from exc

    async def aclose(self) -> None:
        await self.store.aclose()
