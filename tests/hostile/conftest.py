from __future__ import annotations

import io
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from tests.e2e.stack import Stack
from tests.e2e.test_journey import recharge, register_and_verify
from tests.infra import Infra


@pytest.fixture(scope="package")
def stack(infra: Infra, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One whole stack for every hostile-input suite."""
    home: Path = tmp_path_factory.mktemp("hostile")
    stack = Stack(home, infra)
    stack.env["ATELIER_LOCAL_DELAY_SECONDS"] = "0.2"
    stack.start()
    yield stack
    stack.stop()


@dataclass
class Owned:
    """A user with one of everything a user owns."""

    token: str
    http: httpx.Client
    user_id: str
    task: dict[str, Any]
    run: dict[str, Any]
    order: dict[str, Any]
    conversation: dict[str, Any]
    upload: dict[str, Any]
    api_key: dict[str, Any]


def _until(http: httpx.Client, path: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        body: dict[str, Any] = http.get(path).json()
        if body["status"] in ("succeeded", "failed", "canceled"):
            return body
        time.sleep(0.3)
    raise AssertionError(f"{path} did not finish")


def make_owner(stack: Stack) -> Owned:
    token = register_and_verify(stack, f"owner-{uuid.uuid4().hex[:8]}@example.com")
    http = stack.client(token)
    user_id = http.get("/v1/me").json()["id"]
    order = recharge(http, "alipay", "300", f"r-{uuid.uuid4()}")
    photo = io.BytesIO()
    Image.new("RGB", (64, 64), (10, 120, 40)).save(photo, format="PNG")
    upload = http.post(
        "/v1/uploads",
        content=photo.getvalue(),
        headers={"Content-Type": "image/png"},
        params={"filename": "p.png"},
    ).json()
    task = http.post(
        "/v1/tasks",
        json={
            "kind": "image",
            "model": "gpt-image-1.5-all",
            "prompt": "a mug",
            "ratio": "1:1",
            "resolution": "1024",
        },
        headers={"Idempotency-Key": str(uuid.uuid4())},
    ).json()
    task = _until(http, f"/v1/tasks/{task['id']}")
    templates = {t["code"]: t for t in http.get("/v1/workflow-templates").json()["templates"]}
    inputs: dict[str, Any] = {"productText": "A mug"}
    for spec in templates["health-supplement"]["inputs"]:
        if spec["name"] == "productPhotos":
            inputs["productPhotos"] = [upload["id"]]
        elif spec["allowed_values"]:
            inputs[spec["name"]] = spec["allowed_values"][0]
    run = http.post(
        "/v1/workflow-runs",
        json={"template_code": "health-supplement", "inputs": inputs},
        headers={"Idempotency-Key": str(uuid.uuid4())},
    ).json()["run"]
    conversation = http.post("/v1/copy/conversations", json={"model": "gemini-2.5-flash"}).json()
    created = http.post("/v1/api-keys", json={"name": "ci"}).json()
    api_key = created.get("api_key", created)
    return Owned(token, http, user_id, task, run, order, conversation, upload, api_key)


@pytest.fixture(scope="package")
def alice(stack: Stack) -> Owned:
    return make_owner(stack)


@pytest.fixture(scope="package")
def bob(stack: Stack) -> Owned:
    return make_owner(stack)
