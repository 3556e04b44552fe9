"""The blob store: local round trip, key safety, signed URLs, and SigV4 for S3-compatible stores."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from kit import signed_urls
from kit.errors import NotFound
from services.generation.blobs import BlobNotFound, Blobs, LocalBlobStore, S3BlobStore, check_key


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


def test_sigv4_matches_the_documented_example() -> None:
    """AWS's published GET Object example (examplebucket, test.txt, Range bytes=0-9)."""
    store = S3BlobStore(
        endpoint="https://examplebucket.s3.amazonaws.com",
        bucket="examplebucket",
        region="us-east-1",
        access_key="AKIAIOSFODNN7EXAMPLE",
        secret_key="wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    )
    headers = store.sign(
        "GET", "/test.txt", b"", now=dt.datetime(2013, 5, 24, tzinfo=dt.UTC), extra={"range": "bytes=0-9"}
    )
    assert headers["authorization"] == (
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
        "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
        "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
    )


def test_the_placeholder_url_secret_is_refused_in_production() -> None:
    from pydantic import ValidationError

    from services.generation.settings import GenerationSettings

    with pytest.raises(ValidationError, match="BLOB_URL_SECRET"):
        GenerationSettings(environment="production")
    assert GenerationSettings(environment="production", blob_url_secret="x" * 32).blob_url_secret
