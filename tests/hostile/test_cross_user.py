"""Every user-scoped endpoint, tried with another user's ids: 404 (or 403), and nothing of theirs leaks."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.e2e.stack import Stack
from tests.hostile.conftest import Owned

pytestmark = pytest.mark.slow


def refused(reply: httpx.Response, *secrets: str) -> None:
    assert reply.status_code in (403, 404), (
        reply.request.method,
        reply.request.url,
        reply.status_code,
        reply.text,
    )
    for secret in secrets:
        assert secret not in reply.text, (reply.request.url, reply.text)


def test_another_users_ids_are_not_found(alice: Owned, bob: Owned) -> None:
    http = bob.http
    task, run, order = alice.task, alice.run, alice.order
    conversation, upload = alice.conversation, alice.upload
    refused(http.get(f"/v1/tasks/{task['id']}"), task["prompt"])
    refused(http.post(f"/v1/tasks/{task['id']}/cancel"), task["prompt"])
    refused(http.get(f"/v1/workflow-runs/{run['id']}"), "A mug")
    refused(http.post(f"/v1/workflow-runs/{run['id']}/cancel"), "A mug")
    refused(http.get(f"/v1/billing/recharges/{order['id']}"), alice.user_id)
    refused(http.get(f"/v1/copy/conversations/{conversation['id']}"), alice.user_id)
    refused(
        http.post(
            f"/v1/copy/conversations/{conversation['id']}/messages",
            json={"content": "hello"},
            headers={"Idempotency-Key": str(uuid.uuid4())},
        )
    )
    refused(http.delete(f"/v1/api-keys/{alice.api_key['id']}"))
    # Alice's key still works: Bob's delete changed nothing.
    assert alice.http.get("/v1/api-keys").json()["items"][0]["id"] == alice.api_key["id"]

    # Alice's upload and output as inputs of Bob's work.
    for source in ({"upload_id": upload["id"]}, {"output_id": task["outputs"][0]["id"]}):
        reply = http.post(
            "/v1/tasks",
            json={
                "kind": "image",
                "model": "gpt-image-1.5-all",
                "prompt": "edit it",
                "ratio": "1:1",
                "resolution": "1024",
                "capability": "image_edit",
                "inputs": [source],
            },
            headers={"Idempotency-Key": str(uuid.uuid4())},
        )
        assert reply.status_code in (400, 403, 404, 409, 422), reply.text
        assert reply.status_code != 201
    reply = http.post(
        "/v1/workflow-runs",
        json={"template_code": "health-supplement", "inputs": alice.run["inputs"]},
        headers={"Idempotency-Key": str(uuid.uuid4())},
    )
    assert reply.status_code in (400, 403, 404, 409, 422), reply.text


def test_lists_hold_only_ones_own(alice: Owned, bob: Owned) -> None:
    lists = [
        "/v1/tasks",
        "/v1/workflow-runs",
        "/v1/copy/conversations",
        "/v1/billing/records",
        "/v1/api-keys",
        "/v1/usage",
    ]
    alice_ids = {
        alice.task["id"],
        alice.run["id"],
        alice.order["id"],
        alice.conversation["id"],
        alice.api_key["id"],
    }
    for path in lists:
        text = bob.http.get(path).text
        for secret in alice_ids | {alice.user_id}:
            assert secret not in text, (path, secret)
    # Query parameters cannot widen the scope either.
    for path in ("/v1/tasks", "/v1/billing/records", "/v1/workflow-runs"):
        text = bob.http.get(path, params={"user_id": alice.user_id}).text
        assert alice.task["id"] not in text
        assert alice.order["id"] not in text


def test_files_need_their_signature(stack: Stack, alice: Owned, bob: Owned) -> None:
    url = httpx.URL(alice.task["outputs"][0]["url"])
    assert bob.http.get(url.path, params=dict(url.params)).status_code == 200  # a signed link is a capability
    for params in ({}, {**dict(url.params), "signature": "0" * 64}):
        for client in (bob.http, alice.http, httpx.Client(base_url=stack.base_url)):
            reply = client.get(url.path, params=params)
            assert reply.status_code in (401, 403, 404, 422), (params, reply.status_code)
            assert alice.task["prompt"] not in reply.text
    # Alice's signature on another path (Bob's folder, another task) opens nothing.
    assert alice.user_id in url.path
    assert alice.task["id"] in url.path
    for other in (
        url.path.replace(alice.user_id, bob.user_id),
        url.path.replace(alice.task["id"], bob.task["id"]),
    ):
        reply = bob.http.get(other, params=dict(url.params))
        assert reply.status_code in (401, 403, 404), (other, reply.status_code)
