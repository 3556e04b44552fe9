"""The blob store without a server: the local folder (unit tests only), key safety, signed URLs, byte ranges,
and the settings that refuse a local folder in production. Against a real S3 server: test_blobs_s3.py."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from kit import signed_urls
from kit.errors import NotFound
from services.generation.blobs import BlobNotFound, Blobs, LocalBlobStore, Span, byte_span, check_key


async def test_local_store_round_trip(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    await store.put("outputs/u1/t1/0.png", b"png bytes", "image/png")
    assert await store.get("outputs/u1/t1/0.png") == b"png bytes"
    with pytest.raises(BlobNotFound):
        await store.get("outputs/u1/t1/1.png")


@pytest.mark.parametrize("key", ["../etc/passwd", "a/../../b", "/abs", "", "a b"])
def test_unsafe_keys_are_refused(key: str) -> None:
    with pytest.raises(ValueError, match="invalid blob key"):
        check_key(key)


@pytest.mark.parametrize("key", ["../etc/passwd", "a/../../b", "/abs", "", "a\x00b", "x/../../" + "y" * 500])
async def test_a_signed_link_to_an_unsafe_key_is_not_found(tmp_path: Path, key: str) -> None:
    """However well signed: such a key never names a stored file, so it is missing, not a failure."""
    (tmp_path / "store").mkdir()
    (tmp_path / "secret").write_bytes(b"outside the store")
    blobs = Blobs(
        LocalBlobStore(tmp_path / "store"), url_base="https://x/v1/files", secret="s", ttl_seconds=600
    )
    expires = 2**40
    with pytest.raises(NotFound) as caught:
        await blobs.read_signed(key, expires, signed_urls.signature(key, expires, "s"))
    assert caught.value.code == "file_not_found"


async def test_delete_is_idempotent(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    await store.put("uploads/u1/a.png", b"x", "image/png")
    await store.delete("uploads/u1/a.png")
    await store.delete("uploads/u1/a.png")
    with pytest.raises(BlobNotFound):
        await store.get("uploads/u1/a.png")


def test_signed_urls_expire_and_cannot_be_altered(tmp_path: Path) -> None:
    blobs = Blobs(
        LocalBlobStore(tmp_path), url_base="https://api.example/v1/files", secret="s3cret", ttl_seconds=600
    )
    url, expires_at = blobs.signed_url("outputs/u1/t1/0.png", now=1_000_000)
    assert expires_at == dt.datetime.fromtimestamp(1_000_600, dt.UTC)
    parts = urlsplit(url)
    assert parts.path == "/v1/files/outputs/u1/t1/0.png"
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    expires, signature = int(query["expires"]), query["signature"]
    assert blobs.verify("outputs/u1/t1/0.png", expires, signature, now=1_000_100)
    assert not blobs.verify("outputs/u1/t1/0.png", expires, signature, now=1_000_601)
    assert not blobs.verify("outputs/u2/t1/0.png", expires, signature, now=1_000_100)
    assert not blobs.verify("outputs/u1/t1/0.png", expires + 3600, signature, now=1_000_100)
    assert not signed_urls.verify("outputs/u1/t1/0.png", expires, signature, secret="other", now=1_000_100)


def test_the_placeholder_url_secret_is_refused_in_production() -> None:
    from pydantic import ValidationError

    from services.generation.settings import GenerationSettings

    with pytest.raises(ValidationError, match="BLOB_URL_SECRET"):
        GenerationSettings(environment="production", grpc_tls_dir="/run/tls", s3_bucket="b")
    assert GenerationSettings(
        environment="production", s3_bucket="b", blob_url_secret="x" * 32, grpc_tls_dir="/run/tls"
    ).blob_url_secret


def test_production_refuses_a_local_folder_and_s3_needs_a_bucket() -> None:
    from pydantic import ValidationError

    from services.generation.settings import GenerationSettings

    with pytest.raises(ValidationError, match="BLOB_BACKEND=local keeps files in one pod's folder"):
        GenerationSettings(
            environment="production", grpc_tls_dir="/run/tls", blob_url_secret="x" * 32, blob_backend="local"
        )
    with pytest.raises(ValidationError, match="ATELIER_S3_BUCKET must be set"):
        GenerationSettings()
    assert GenerationSettings(blob_backend="local").blob_root == Path(".atelier/blobs")


async def test_the_local_store_reads_ranges_and_heads(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    await store.put("outputs/u1/t1/0.png", b"0123456789", "image/png")
    assert b"".join([c async for c in store.open("outputs/u1/t1/0.png", 2, 5)]) == b"234"
    info = await store.head("outputs/u1/t1/0.png")
    assert (info.size, info.content_type) == (10, "image/png")
    with pytest.raises(BlobNotFound):
        await store.head("outputs/u1/t1/1.png")


@pytest.mark.parametrize(
    ("size", "first", "last", "span"),
    [
        (10, None, None, Span(0, 10)),
        (0, None, None, Span(0, 0)),
        (10, 2, 5, Span(2, 6)),
        (10, 2, None, Span(2, 10)),
        (10, 2, 99, Span(2, 10)),
        (10, None, 3, Span(7, 10)),
        (10, None, 99, Span(0, 10)),
        (10, 10, None, None),
        (10, 10, 12, None),
        (10, None, 0, None),
        (0, None, 5, None),
        (0, 0, None, None),
    ],
)
def test_byte_spans_follow_http_ranges(
    size: int, first: int | None, last: int | None, span: Span | None
) -> None:
    assert byte_span(size, first, last) == span
