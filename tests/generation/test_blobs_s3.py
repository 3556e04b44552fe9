"""The S3 store against a real S3 server (the run's SeaweedFS, as `make run` starts it): round trip, byte
ranges streamed in chunks, head, multipart for large objects, a missing key, and keys that open nothing
without them."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator

import httpx
import pytest
from botocore.exceptions import ClientError

from devkit.embedded import S3Access
from services.generation.blobs import CHUNK_SIZE, BlobNotFound, S3BlobStore

PART = 5 * 1024 * 1024  # S3's smallest part, so that a few parts stay quick


@pytest.fixture
async def store(bucket: S3Access) -> AsyncIterator[S3BlobStore]:
    store = S3BlobStore(
        endpoint=bucket.endpoint,
        bucket=bucket.bucket,
        region=bucket.region,
        access_key=bucket.access_key,
        secret_key=bucket.secret_key,
        part_size=PART,
    )
    yield store
    await store.aclose()


async def read(store: S3BlobStore, key: str, start: int = 0, end: int | None = None) -> list[bytes]:
    return [chunk async for chunk in store.open(key, start, end)]


async def test_round_trip_head_and_delete(store: S3BlobStore) -> None:
    await store.put("outputs/u1/t1/0.png", b"png bytes", "image/png")
    assert await store.get("outputs/u1/t1/0.png") == b"png bytes"
    info = await store.head("outputs/u1/t1/0.png")
    assert (info.size, info.content_type) == (9, "image/png")
    assert info.etag == hashlib.md5(b"png bytes").hexdigest()  # a single PUT: the content's MD5
    await store.delete("outputs/u1/t1/0.png")
    await store.delete("outputs/u1/t1/0.png")  # idempotent
    with pytest.raises(BlobNotFound):
        await store.get("outputs/u1/t1/0.png")


async def test_a_missing_key_is_blob_not_found_for_every_read(store: S3BlobStore) -> None:
    with pytest.raises(BlobNotFound):
        await store.head("outputs/nobody/0.png")
    with pytest.raises(BlobNotFound):
        await read(store, "outputs/nobody/0.png", 10, 20)


async def test_ranges_stream_in_chunks(store: S3BlobStore) -> None:
    data = os.urandom(3 * CHUNK_SIZE + 123)
    await store.put("outputs/u1/t1/0.mp4", data, "video/mp4")
    whole = await read(store, "outputs/u1/t1/0.mp4")
    assert b"".join(whole) == data
    assert max(len(c) for c in whole) <= CHUNK_SIZE
    assert b"".join(await read(store, "outputs/u1/t1/0.mp4", 100, 200)) == data[100:200]
    assert b"".join(await read(store, "outputs/u1/t1/0.mp4", CHUNK_SIZE + 5)) == data[CHUNK_SIZE + 5 :]
    assert await read(store, "outputs/u1/t1/0.mp4", 50, 50) == []


async def test_a_reader_that_stops_early_frees_its_connection(store: S3BlobStore) -> None:
    await store.put("outputs/u1/t1/big.bin", os.urandom(4 * CHUNK_SIZE), "application/octet-stream")
    for _ in range(40):  # more than the client's pool of 32 connections
        stream = store.open("outputs/u1/t1/big.bin")
        assert len(await anext(stream)) > 0
        await stream.aclose()  # type: ignore[attr-defined]
    assert (await store.head("outputs/u1/t1/big.bin")).size == 4 * CHUNK_SIZE


async def test_large_objects_go_up_in_parts(store: S3BlobStore) -> None:
    data = os.urandom(2 * PART + 777)
    await store.put("outputs/u1/t2/0.mp4", data, "video/mp4")
    info = await store.head("outputs/u1/t2/0.mp4")
    assert info.size == len(data)
    assert info.content_type == "video/mp4"
    assert info.etag.endswith("-3"), info.etag  # S3's multipart ETag: `<md5 of the part md5s>-<parts>`
    assert await store.get("outputs/u1/t2/0.mp4") == data
    assert (
        b"".join(await read(store, "outputs/u1/t2/0.mp4", PART - 10, PART + 10))
        == data[PART - 10 : PART + 10]
    )


async def test_a_failed_multipart_upload_leaves_no_object_and_no_parts(store: S3BlobStore) -> None:
    """A bucket that does not exist fails the upload at its first call; a part that fails aborts it."""
    client = await store.client()
    data = os.urandom(2 * PART + 1)

    async def failing_part(**kwargs: object) -> dict[str, str]:
        raise ClientError({"Error": {"Code": "InternalError", "Message": "boom"}}, "UploadPart")

    original = client.upload_part
    client.upload_part = failing_part  # type: ignore[assignment,method-assign]
    try:
        with pytest.raises(ExceptionGroup):
            await store.put("outputs/u1/t3/0.mp4", data, "video/mp4")
    finally:
        client.upload_part = original  # type: ignore[method-assign]
    with pytest.raises(BlobNotFound):
        await store.head("outputs/u1/t3/0.mp4")
    uploads = await client.list_multipart_uploads(Bucket=store.bucket)
    assert uploads.get("Uploads", []) == []


async def test_wrong_keys_open_nothing(bucket: S3Access, store: S3BlobStore) -> None:
    await store.put("outputs/u1/x.png", b"x", "image/png")
    async with httpx.AsyncClient() as anonymous:
        assert (await anonymous.get(f"{bucket.endpoint}/{bucket.bucket}/outputs/u1/x.png")).status_code == 403
    intruder = S3BlobStore(
        endpoint=bucket.endpoint,
        bucket=bucket.bucket,
        region=bucket.region,
        access_key=bucket.access_key,
        secret_key="not-the-secret",
    )
    with pytest.raises(ClientError) as caught:
        await intruder.put("outputs/u1/x.png", b"x", "image/png")
    assert caught.value.response["Error"]["Code"] == "SignatureDoesNotMatch"
    await intruder.aclose()
