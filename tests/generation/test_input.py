"""Hostile input against the real generation service and its database, through the gateway and around
it: text PostgreSQL cannot store is refused naming the field with nothing created (no row, no hold, no
blob), a failed upload leaves no blob, and a signed link to a traversal key is a plain 404."""

from __future__ import annotations

import io
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import httpx
import pytest
import sqlalchemy as sa
from PIL import Image

from atelier.common.v1 import common_pb2
from atelier.generation.v1 import generation_pb2
from kit import signed_urls
from kit.errors import InvalidArgument, from_rpc_error
from kit.identity import Identity
from kit.outbox import Outbox
from services.generation import models
from services.generation.clients import Clients
from services.generation.service import Generation
from tests.gateway_app import gateway_app, serving
from tests.generation.stack import Stack, metadata
from tests.infra import Infra
from tests.tokens import as_user, live_sessions

TABLES = (models.tasks, models.outputs, models.uploads, models.conversations, models.messages)


@pytest.fixture
async def http(stack: Stack, infra: Infra) -> AsyncIterator[httpx.AsyncClient]:
    async with live_sessions() as sessions:
        app = gateway_app(
            infra,
            generation_addr=stack.generation_addr,
            accounts_addr=sessions,
            namespace=stack.settings.namespace,
        )
        async with serving(app, base_url="http://test") as client:
            yield client


async def row_counts(stack: Stack) -> dict[str, int]:
    async with stack.db.session() as session:
        return {
            table.name: (await session.execute(sa.select(sa.func.count()).select_from(table))).scalar_one()
            for table in TABLES
        }


async def blob_files(stack: Stack) -> list[Path]:
    return [Path(key) for key in await stack.stored_keys()]


def png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 40, 40)).save(out, format="PNG")
    return out.getvalue()


def assert_invalid_text(answer: httpx.Response, field: str, location: str) -> None:
    assert answer.status_code == 400, (answer.request.url, answer.text)
    assert answer.headers["content-type"].startswith("application/problem+json")
    body = answer.json()
    assert (body["code"], body["field"], body["location"]) == ("invalid_text", field, location), body


async def test_nul_in_each_generation_field_is_a_400_and_creates_nothing(
    stack: Stack, http: httpx.AsyncClient
) -> None:
    user = stack.user(100_000)
    http.headers.update(as_user(user.user_id))
    chat = await http.post("/v1/copy/conversations", json={"model": "txt", "title": "clean"})
    assert chat.status_code == 201, chat.text
    before = await row_counts(stack)
    task = {"kind": "image", "model": "img", "prompt": "a lamp", "ratio": "1:1", "resolution": "1K"}
    key = {"Idempotency-Key": "k1"}

    attempts = [
        (http.post("/v1/tasks", json={**task, "prompt": "a\x00lamp"}, headers=key), "/prompt", "body"),
        (
            http.post(
                "/v1/tasks",
                json={**task, "inputs": [{"output_id": "out_1\x00", "role": "reference"}]},
                headers=key,
            ),
            "/inputs/0/output_id",
            "body",
        ),
        (http.get("/v1/tasks/t_1%00"), "task_id", "path"),
        (http.post("/v1/tasks/t_1%00/cancel"), "task_id", "path"),
        (http.get("/v1/tasks", params={"model": "img\x00"}), "model", "query"),
        (http.post("/v1/copy/conversations", json={"model": "txt", "title": "t\x00"}), "/title", "body"),
        (
            http.post(f"/v1/copy/conversations/{chat.json()['id']}/messages", json={"content": "hi\x00"}),
            "/content",
            "body",
        ),
        (
            http.post(
                "/v1/uploads",
                content=png(),
                headers={"Content-Type": "image/png"},
                params={"filename": "p\x00.png"},
            ),
            "filename",
            "query",
        ),
    ]
    for call, field, location in attempts:
        assert_invalid_text(await call, field, location)

    assert await row_counts(stack) == before
    assert not stack.ledger.holds
    assert await blob_files(stack) == []


async def test_a_service_method_called_directly_refuses_nul(stack: Stack) -> None:
    """The gRPC edge holds on its own: a caller that is not the gateway meets the same check."""
    user = stack.user(100_000)
    before = await row_counts(stack)
    calls = [
        (
            stack.stub.CreateConversation(
                generation_pb2.CreateConversationRequest(model_code="txt", title="t\x00"),
                metadata=metadata(user),
            ),
            "title",
        ),
        (
            stack.stub.SubmitTask(
                generation_pb2.SubmitTaskRequest(
                    kind=common_pb2.MODEL_KIND_IMAGE,
                    model_code="img",
                    prompt="a lamp",
                    ratio="1:1",
                    resolution="1K",
                    n=1,
                    idempotency_key="k",
                    inputs=[
                        generation_pb2.TaskInput(output_id="o\x00", role=generation_pb2.INPUT_ROLE_REFERENCE)
                    ],
                ),
                metadata=metadata(user),
            ),
            "inputs[0].output_id",
        ),
        (
            stack.stub.CreateUpload(
                generation_pb2.CreateUploadRequest(
                    content=png(), filename="p\x00.png", content_type="image/png"
                ),
                metadata=metadata(user),
            ),
            "filename",
        ),
    ]
    for call, field in calls:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        error = from_rpc_error(caught.value)
        assert isinstance(error, InvalidArgument)
        assert (error.code, error.details) == ("invalid_text", {"field": field})
    assert await row_counts(stack) == before
    assert not stack.ledger.holds
    assert await blob_files(stack) == []


async def test_an_upload_whose_row_fails_leaves_no_blob(stack: Stack) -> None:
    """Below the edges: when the database refuses the row, the blob stored just before goes too."""
    generation = Generation(
        stack.db,
        Outbox(models.outbox),
        Clients(stack.settings),
        stack.blobs,
        stack.settings,
    )
    user: Identity = stack.user()
    with pytest.raises(Exception, match="0x00"):
        await generation.create_upload(user.user_id, png(), "p\x00.png", "image/png")
    assert await blob_files(stack) == []
    stored = await generation.create_upload(user.user_id, png(), "p.png", "image/png")
    assert [p.name for p in await blob_files(stack)] == [Path(stored.blob_key).name]


TRAVERSALS = [
    ("/v1/files/%2e%2e/%2e%2e/etc/passwd", "../../etc/passwd"),
    ("/v1/files/uploads/%2e%2e/%2e%2e/%2e%2e/etc/passwd", "uploads/../../../etc/passwd"),
    ("/v1/files/..%2f..%2fsettings.py", "../../settings.py"),
    ("/v1/files//etc/passwd", "/etc/passwd"),
    ("/v1/files/outputs/u/t/0.png%2f..%2f..%2f..%2f..%2fx", "outputs/u/t/0.png/../../../../x"),
]


@pytest.mark.parametrize(("url", "key"), TRAVERSALS)
async def test_a_signed_link_to_a_traversal_key_is_404_without_a_traceback(
    stack: Stack, http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture, url: str, key: str
) -> None:
    # Signed with the real secret: the worst case, a link the service itself would accept.
    expires = int(time.time()) + 600
    sig = signed_urls.signature(key, expires, stack.settings.blob_url_secret)
    with caplog.at_level(logging.INFO):
        answer = await http.get(url, params={"expires": expires, "signature": sig})
        direct = stack.stub.ReadFile(generation_pb2.ReadFileRequest(path=key, expires=expires, signature=sig))
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            async for _ in direct:
                pass
    assert answer.status_code == 404, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert answer.json()["code"] == "file_not_found"
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR] == []
