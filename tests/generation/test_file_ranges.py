"""Downloads through the real gateway from the real generation servicer and a real S3 server: `Range`
(206, 416), `HEAD`, `ETag` with `If-None-Match` (304) and `If-Range`, and a large file streamed through
both without either holding it."""

from __future__ import annotations

import hashlib
import os
import tracemalloc
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from tests.gateway.payments.fakes import serve_http
from tests.gateway_app import gateway_app, serving
from tests.generation.stack import Stack
from tests.infra import Infra

SIZE = 3 * 1024 * 1024 + 17


@pytest.fixture
def gateway(stack: Stack, infra: Infra) -> FastAPI:
    """The real gateway app in front of this stack's generation (files need no other service)."""
    return gateway_app(infra, generation_addr=stack.generation_addr, namespace=stack.settings.namespace)


@pytest.fixture
async def http(gateway: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with serving(gateway, base_url="http://test") as client:
        yield client


async def stored(stack: Stack, key: str, data: bytes, content_type: str = "video/mp4") -> httpx.URL:
    """A file put in the store and the signed link the product would hand out for it (path and query)."""
    await stack.blobs.store.put(key, data, content_type)
    url, _ = stack.blobs.signed_url(key)
    parts = httpx.URL(url)
    return httpx.URL(parts.raw_path.decode())


@pytest.fixture
async def video(stack: Stack) -> tuple[httpx.URL, bytes]:
    data = os.urandom(SIZE)
    return await stored(stack, "outputs/u1/t1/0.mp4", data), data


async def test_a_whole_file_and_its_description(
    http: httpx.AsyncClient, video: tuple[httpx.URL, bytes]
) -> None:
    link, data = video
    whole = await http.get(link)
    assert whole.status_code == 200
    assert whole.content == data
    assert whole.headers["content-type"] == "video/mp4"
    assert whole.headers["content-length"] == str(SIZE)
    assert whole.headers["accept-ranges"] == "bytes"
    etag = whole.headers["etag"]
    assert len(etag) > 2
    assert etag[0] == etag[-1] == '"'

    head = await http.head(link)
    assert head.status_code == 200
    assert head.content == b""
    assert (head.headers["content-length"], head.headers["etag"]) == (str(SIZE), etag)
    assert head.headers["content-type"] == "video/mp4"


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [
        ("bytes=0-0", 0, 1),
        ("bytes=100-199", 100, 200),
        ("bytes=1048570-1048600", 1048570, 1048601),  # across a chunk boundary
        (f"bytes={SIZE - 10}-", SIZE - 10, SIZE),
        (f"bytes=5-{SIZE + 1000}", 5, SIZE),  # a last byte past the end is the end
        ("bytes=-500", SIZE - 500, SIZE),
    ],
)
async def test_a_range_is_206_with_exactly_its_bytes(
    http: httpx.AsyncClient, video: tuple[httpx.URL, bytes], header: str, start: int, end: int
) -> None:
    link, data = video
    answer = await http.get(link, headers={"Range": header})
    assert answer.status_code == 206, answer.text
    assert answer.content == data[start:end]
    assert answer.headers["content-range"] == f"bytes {start}-{end - 1}/{SIZE}"
    assert answer.headers["content-length"] == str(end - start)


@pytest.mark.parametrize("header", [f"bytes={SIZE}-", f"bytes={SIZE + 5}-{SIZE + 10}", "bytes=-0"])
async def test_a_range_past_the_end_is_416(
    http: httpx.AsyncClient, video: tuple[httpx.URL, bytes], header: str
) -> None:
    link, _ = video
    answer = await http.get(link, headers={"Range": header})
    assert answer.status_code == 416
    assert answer.headers["content-range"] == f"bytes */{SIZE}"
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert answer.json()["code"] == "range_not_satisfiable"


@pytest.mark.parametrize("header", ["bytes=0-1,5-6", "items=0-5", "bytes=9-3", "bytes=-", "bytes=abc"])
async def test_a_range_header_it_cannot_use_is_ignored(
    http: httpx.AsyncClient, video: tuple[httpx.URL, bytes], header: str
) -> None:
    link, data = video
    answer = await http.get(link, headers={"Range": header})
    assert answer.status_code == 200
    assert answer.content == data


async def test_etags_make_requests_conditional(
    http: httpx.AsyncClient, video: tuple[httpx.URL, bytes]
) -> None:
    link, data = video
    etag = (await http.head(link)).headers["etag"]
    for current in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        answer = await http.get(link, headers={"If-None-Match": current})
        assert answer.status_code == 304, current
        assert answer.content == b""
        assert answer.headers["etag"] == etag
    changed = await http.get(link, headers={"If-None-Match": '"other"'})
    assert (changed.status_code, changed.content) == (200, data)
    # If-Range: the range only if the client's partial copy is of these bytes, else the whole file.
    resumed = await http.get(link, headers={"Range": "bytes=10-19", "If-Range": etag})
    assert (resumed.status_code, resumed.content) == (206, data[10:20])
    restarted = await http.get(link, headers={"Range": "bytes=10-19", "If-Range": '"other"'})
    assert (restarted.status_code, restarted.content) == (200, data)


async def test_empty_missing_and_forged_files(stack: Stack, http: httpx.AsyncClient) -> None:
    empty = await stored(stack, "uploads/u1/empty.txt", b"", "text/plain")
    answer = await http.get(empty)
    assert (answer.status_code, answer.content, answer.headers["content-length"]) == (200, b"", "0")
    assert (await http.get(empty, headers={"Range": "bytes=0-"})).status_code == 416

    url, _ = stack.blobs.signed_url("outputs/u1/t1/never-written.png")
    missing = httpx.URL(httpx.URL(url).raw_path.decode())
    for method in ("GET", "HEAD"):
        assert (await http.request(method, missing)).status_code == 404
    forged = empty.copy_merge_params({"signature": "0" * 64})
    for method in ("GET", "HEAD"):
        assert (await http.request(method, forged)).status_code == 403


@pytest.fixture
async def served(gateway: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """The gateway behind uvicorn on a real socket, as it runs (ASGI in process buffers each response)."""
    async with (
        gateway.router.lifespan_context(gateway),
        serve_http(gateway) as url,
        httpx.AsyncClient(base_url=url) as client,
    ):
        yield client


async def test_a_large_file_streams_through_without_being_held(
    stack: Stack, served: httpx.AsyncClient
) -> None:
    """40 MiB (a multipart upload) read back through gateway and generation, both in this process: its
    Python allocations peak at a few chunks, nowhere near the file."""
    size = 40 * 1024 * 1024
    data = os.urandom(size)
    expected = hashlib.sha256(data[1000:]).hexdigest()
    link = await stored(stack, "outputs/u1/t2/0.mp4", data)
    del data
    received = hashlib.sha256()
    tracemalloc.start()
    try:
        async with served.stream("GET", link, headers={"Range": "bytes=1000-"}) as answer:
            assert answer.status_code == 206
            async for chunk in answer.aiter_bytes():
                received.update(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert received.hexdigest() == expected
    assert peak < 16 * 1024 * 1024, f"peak {peak / 2**20:.1f} MiB while streaming {size / 2**20:.0f} MiB"
