"""The gateway's task, upload and Copy Studio routes over the real generation servicer."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator

import httpx
import pytest
from PIL import Image

from kit.identity import Identity
from tests.gateway_app import gateway_app, serving
from tests.generation.stack import Stack
from tests.infra import Infra
from tests.tokens import as_user, live_sessions


@pytest.fixture
async def sessions() -> AsyncIterator[str]:
    async with live_sessions() as address:
        yield address


@pytest.fixture
async def client(
    stack: Stack, sessions: str, infra: Infra
) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, Identity]]]:
    app = gateway_app(
        infra,
        generation_addr=stack.generation_addr,
        accounts_addr=sessions,
        namespace=stack.settings.namespace,
    )
    who: dict[str, Identity] = {}

    async def sign_in(request: httpx.Request) -> None:
        """Every request carries a real access token for whoever `who["current"]` is."""
        if "current" in who:
            person = who["current"]
            request.headers.update(as_user(person.user_id, person.status, person.role))

    async with serving(app, base_url="http://test", event_hooks={"request": [sign_in]}) as http:
        yield http, who


async def test_without_auth_every_route_answers_401(stack: Stack, infra: Infra) -> None:
    app = gateway_app(infra, generation_addr=stack.generation_addr, namespace=stack.settings.namespace)
    async with serving(app, base_url="http://test") as http:
        for method, path in (
            ("GET", "/v1/tasks"),
            ("GET", "/v1/tasks/x"),
            ("POST", "/v1/tasks/x/cancel"),
        ):
            answer = await http.request(method, path)
            assert answer.status_code == 401
            assert answer.headers["content-type"].startswith("application/problem+json")


async def test_tasks_over_http(stack: Stack, client: tuple[httpx.AsyncClient, dict[str, Identity]]) -> None:
    http, who = client
    await stack.start_worker()
    who["current"] = stack.user(10_000)
    body = {"kind": "image", "model": "img", "prompt": "a lamp", "ratio": "1:1", "resolution": "1K", "n": 1}
    missing_key = await http.post("/v1/tasks", json=body)
    assert missing_key.status_code == 422
    created = await http.post("/v1/tasks", json=body, headers={"Idempotency-Key": "h1"})
    assert created.status_code == 201, created.text
    task = created.json()
    assert (task["status"], task["price"]) == ("queued", "2")
    replay = await http.post("/v1/tasks", json=body, headers={"Idempotency-Key": "h1"})
    assert (replay.status_code, replay.json()["id"]) == (200, task["id"])
    await stack.wait_completed(task["id"])
    got = (await http.get(f"/v1/tasks/{task['id']}")).json()
    assert got["status"] == "succeeded"
    assert got["outputs"][0]["width"] == 1024
    # The output's signed URL is served by the gateway (no session needed: the link is the credential).
    link = httpx.URL(got["outputs"][0]["url"])
    image = await http.get(link.path, params=dict(link.params), headers={"Authorization": ""})
    assert image.status_code == 200, image.text
    assert image.headers["content-type"] == "image/png"
    assert image.content.startswith(b"\x89PNG")
    assert Image.open(io.BytesIO(image.content)).size == (1024, 1024)
    forged = dict(link.params) | {"signature": "0" * 64}
    refused = await http.get(link.path, params=forged)
    assert (refused.status_code, refused.json()["code"]) == (403, "link_invalid")
    listed = (await http.get("/v1/tasks", params={"status": "succeeded"})).json()
    assert [t["id"] for t in listed["items"]] == [task["id"]]
    poor = await http.post("/v1/tasks", json=body | {"n": 10}, headers={"Idempotency-Key": "h2"})
    assert poor.status_code in (402, 409, 422, 400, 412)
    assert poor.json()["code"] == "insufficient_balance"
    who["current"] = stack.user(10_000)
    assert (await http.get(f"/v1/tasks/{task['id']}")).status_code == 404
    assert (await http.post(f"/v1/tasks/{task['id']}/cancel")).status_code == 404
    # The owner filter is lifted for admins only (the spend debugger reads any task).
    who["current"] = Identity(user_id="an-admin", role="admin")
    assert (await http.get(f"/v1/tasks/{task['id']}")).status_code == 200


async def test_uploads_and_copy_streaming(
    stack: Stack, client: tuple[httpx.AsyncClient, dict[str, Identity]]
) -> None:
    http, who = client
    who["current"] = stack.user(10_000)
    png = io.BytesIO()
    Image.new("RGB", (30, 20)).save(png, format="PNG")
    upload = await http.post(
        "/v1/uploads",
        content=png.getvalue(),
        headers={"Content-Type": "image/png"},
        params={"filename": "p.png"},
    )
    assert upload.status_code == 201, upload.text
    assert (upload.json()["width"], upload.json()["height"]) == (30, 20)
    bad = await http.post("/v1/uploads", content=b"hello", headers={"Content-Type": "image/png"})
    assert bad.status_code == 400
    chat = (await http.post("/v1/copy/conversations", json={"model": "txt"})).json()
    events: list[tuple[str, dict[str, object]]] = []
    async with http.stream(
        "POST", f"/v1/copy/conversations/{chat['id']}/messages", json={"content": "tea"}
    ) as answer:
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/event-stream")
        kind = ""
        async for line in answer.aiter_lines():
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                events.append((kind, json.loads(line[6:])))
    kinds = [k for k, _ in events]
    assert kinds[0] == "user_message"
    assert kinds[-1] == "final"
    assert "delta" in kinds
    assert events[-1][1]["status"] == "completed"
    missing = await http.post("/v1/copy/conversations/nope/messages", json={"content": "x"})
    assert missing.status_code == 404
    # A conversation with a model that cannot answer is refused when it is created.
    for model, status, code in (("nope", 404, "model_not_found"), ("img", 400, "unsupported_spec")):
        refused = await http.post("/v1/copy/conversations", json={"model": model})
        assert refused.status_code == status, refused.text
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert refused.json()["code"] == code
    listed = (await http.get("/v1/copy/conversations")).json()["items"]
    assert [c["id"] for c in listed] == [chat["id"]]
