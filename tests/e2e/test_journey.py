"""The product document's Getting Started path, as a client walks it, against the whole stack."""

from __future__ import annotations

import io
import json
import time
import uuid
from decimal import Decimal
from typing import Any

import httpx
import pytest
from PIL import Image

from tests.e2e.stack import Stack

pytestmark = pytest.mark.slow
PASSWORD = "a long enough passphrase 2026"


def register_and_verify(stack: Stack, email: str) -> str:
    """Register, follow the verification mail, log in; the access token."""
    with stack.client() as http:
        reply = http.post("/v1/auth/register", json={"email": email, "password": PASSWORD, "locale": "en"})
        assert reply.status_code == 201, reply.text
        assert reply.json()["status"] == "unverified"
        token = stack.verification_token(email.lower())
        reply = http.post("/v1/auth/verify-email", json={"token": token})
        assert reply.status_code == 200, reply.text
        assert reply.json()["status"] == "active"
        reply = http.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
        assert reply.status_code == 200, reply.text
        access: str = reply.json()["access_token"]
        return access


def recharge(http: httpx.Client, method: str, amount: str, key: str) -> dict[str, Any]:
    """Create a recharge order and pay it through the sandbox payer (a signed callback)."""
    reply = http.post(
        "/v1/billing/recharges", json={"method": method, "amount": amount}, headers={"Idempotency-Key": key}
    )
    assert reply.status_code in (200, 201), reply.text
    order: dict[str, Any] = reply.json()
    assert order["status"] == "pending"
    paid = http.post(f"/sandbox/pay/{order['id']}")
    assert paid.status_code == 200, paid.text
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        state = http.get(f"/v1/billing/recharges/{order['id']}").json()
        if state["status"] == "completed":
            return state  # type: ignore[no-any-return]
        time.sleep(0.2)
    raise AssertionError(f"order {order['id']} not completed: {state}")


def test_register_verify_recharge_and_read_billing(stack: Stack) -> None:
    email = f"Journey-{uuid.uuid4().hex[:8]}@Example.com"
    token = register_and_verify(stack, email)
    with stack.client(token) as http:
        me = http.get("/v1/me").json()
        assert me["email"] == email.lower()
        assert http.get("/v1/billing/balance").json()["available"] == "0"

        # Recharge 300 RMB with Alipay (the sandbox plays the payer locally): 300 paid + 30 bonus.
        order = recharge(http, "alipay", "300", f"recharge-{uuid.uuid4()}")
        assert (order["paid_credits"], order["bonus_credits"], order["total_credits"]) == ("300", "30", "330")
        balance = http.get("/v1/billing/balance").json()
        assert (balance["available"], balance["held"], balance["posted"]) == ("330", "0", "330")

        # The minimum is 30 RMB.
        refused = http.post(
            "/v1/billing/recharges",
            json={"method": "wechatpay", "amount": "29.99"},
            headers={"Idempotency-Key": f"small-{uuid.uuid4()}"},
        )
        assert refused.status_code == 409
        assert refused.json()["code"] == "below_minimum_recharge"

        records = http.get("/v1/billing/records", params={"type": "recharge"}).json()["items"]
        assert sorted(r["delta"] for r in records) == ["30", "300"]
        callbacks = http.get("/v1/billing/records", params={"type": "callback"}).json()["items"]
        assert len(callbacks) == 1
        assert callbacks[0]["callback"]["verified"] is True

        pricing = http.get("/v1/pricing").json()
        kinds = {group["kind"]: [m["code"] for m in group["models"]] for group in pricing["groups"]}
        assert kinds["video"] == ["google-flow-video", "grok-video-3"]
        assert len(kinds["image"]) == 5

    assert stack.reconcile().returncode == 0


def test_an_unverified_account_can_read_but_not_recharge(stack: Stack) -> None:
    email = f"unverified-{uuid.uuid4().hex[:8]}@example.com"
    with stack.client() as http:
        assert http.post("/v1/auth/register", json={"email": email, "password": PASSWORD}).status_code == 201
        token = http.post("/v1/auth/login", json={"email": email, "password": PASSWORD}).json()[
            "access_token"
        ]
    with stack.client(token) as http:
        assert http.get("/v1/billing/balance").status_code == 200
        refused = http.post(
            "/v1/billing/recharges",
            json={"method": "alipay", "amount": "300"},
            headers={"Idempotency-Key": str(uuid.uuid4())},
        )
        assert refused.status_code == 403
        assert refused.json()["code"] == "email_not_verified"


def wait_for(http: httpx.Client, path: str, done: set[str], timeout: float = 90) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body: dict[str, Any] = http.get(path).json()
        if body.get("status") in done:
            return body
        time.sleep(0.3)
    raise AssertionError(f"{path} did not finish: {body}")


def fetch_output(http: httpx.Client, url: str) -> httpx.Response:
    link = httpx.URL(url)
    reply = http.get(link.path, params=dict(link.params))
    assert reply.status_code == 200, reply.text
    return reply


def copy_message(http: httpx.Client, conversation_id: str, text: str) -> dict[str, Any]:
    """Send a Copy Studio message; the streamed deltas and the final event with the charge."""
    deltas: list[str] = []
    final: dict[str, Any] = {}
    event = ""
    with http.stream(
        "POST",
        f"/v1/copy/conversations/{conversation_id}/messages",
        json={"content": text},
        headers={"Idempotency-Key": str(uuid.uuid4())},
    ) as answer:
        assert answer.status_code == 200, answer.read()
        for line in answer.iter_lines():
            if line.startswith("event: "):
                event = line.removeprefix("event: ")
            elif line.startswith("data: "):
                data = json.loads(line.removeprefix("data: "))
                if event == "delta":
                    deltas.append(data.get("text", ""))
                elif event == "final":
                    final = data
    assert deltas, "no streamed deltas"
    assert final, "no final event"
    return final


def test_the_getting_started_path(stack: Stack) -> None:
    """Register → verify → recharge 300 (330 credits) → pricing → image → video → copy → each workflow
    template → tasks → usage → billing records, with balances exact at every step."""
    token = register_and_verify(stack, f"studio-{uuid.uuid4().hex[:8]}@example.com")
    with stack.client(token) as http:
        recharge(http, "wechatpay", "300", f"recharge-{uuid.uuid4()}")
        spent = Decimal(0)

        def balance_is(expected_spent: Decimal) -> None:
            balance = http.get("/v1/billing/balance").json()
            assert balance["held"] == "0"
            assert Decimal(balance["available"]) == Decimal(330) - expected_spent

        # Image Studio: the quoted price is what is charged, and the PNG is of the asked size.
        image_body = {
            "kind": "image",
            "model": "gpt-image-1.5-all",
            "prompt": "a ceramic mug on a sunlit desk",
            "ratio": "1:1",
            "resolution": "1024",
        }
        quote = http.post("/v1/quotes", json=image_body | {"model_code": image_body["model"]})
        image = http.post("/v1/tasks", json=image_body, headers={"Idempotency-Key": f"img-{uuid.uuid4()}"})
        assert image.status_code == 201, image.text
        assert image.json()["price"] == "0.5"
        if quote.status_code == 200:
            assert quote.json()["total"] == "0.5"
        done = wait_for(http, f"/v1/tasks/{image.json()['id']}", {"succeeded", "failed", "canceled"})
        assert done["status"] == "succeeded", done
        png = fetch_output(http, done["outputs"][0]["url"])
        assert Image.open(io.BytesIO(png.content)).size == (1024, 1024)
        spent += Decimal("0.5")

        # Video Studio: an MP4 of the asked ratio.
        video_body = {
            "kind": "video",
            "model": "google-flow-video",
            "prompt": "the mug turning slowly",
            "ratio": "16:9",
            "resolution": "720p",
            "duration_seconds": 5,
        }
        video = http.post("/v1/tasks", json=video_body, headers={"Idempotency-Key": f"vid-{uuid.uuid4()}"})
        assert video.status_code == 201, video.text
        done = wait_for(http, f"/v1/tasks/{video.json()['id']}", {"succeeded", "failed", "canceled"})
        assert done["status"] == "succeeded", done
        mp4 = fetch_output(http, done["outputs"][0]["url"])
        assert mp4.content[4:8] == b"ftyp"
        spent += Decimal("0.5")

        # An unsupported spec is refused and charges nothing.
        refused = http.post(
            "/v1/tasks",
            json=video_body | {"duration_seconds": 7},
            headers={"Idempotency-Key": str(uuid.uuid4())},
        )
        assert refused.status_code in (400, 409, 422)
        assert refused.json()["code"] == "unsupported_spec"

        # Copy Studio: streamed answer, billed from the tokens used.
        conversation = http.post("/v1/copy/conversations", json={"model": "gemini-2.5-flash"})
        assert conversation.status_code == 201, conversation.text
        final = copy_message(http, conversation.json()["id"], "Write a tagline for a ceramic mug")
        charge = Decimal(final.get("charge") or final.get("message", {}).get("charge") or "0")
        assert charge > 0
        spent += charge
        time.sleep(1.0)  # the copy charge settles through tasks.completed
        history = http.get(f"/v1/copy/conversations/{conversation.json()['id']}").json()
        assert len(history["messages"]) == 2

        # Workflow: one run of each template, debited once at start.
        photo = io.BytesIO()
        Image.new("RGB", (64, 64), (200, 120, 40)).save(photo, format="PNG")
        upload = http.post(
            "/v1/uploads",
            content=photo.getvalue(),
            headers={"Content-Type": "image/png"},
            params={"filename": "p.png"},
        )
        assert upload.status_code == 201, upload.text
        templates = {t["code"]: t for t in http.get("/v1/workflow-templates").json()["templates"]}
        assert set(templates) == {"health-supplement", "creator-video", "ecom-video-pro"}
        runs = []
        for code, template in templates.items():
            inputs: dict[str, Any] = {"productText": "Hand-made ceramic mug, 350 ml, dishwasher safe"}
            for spec in template["inputs"]:
                if spec["name"] == "productPhotos":
                    inputs["productPhotos"] = [upload.json()["id"]]
                elif spec["allowed_values"]:
                    inputs[spec["name"]] = spec["allowed_values"][0]
            started = http.post(
                "/v1/workflow-runs",
                json={"template_code": code, "inputs": inputs},
                headers={"Idempotency-Key": f"run-{code}-{uuid.uuid4()}"},
            )
            assert started.status_code == 201, started.text
            assert started.json()["run"]["price"] == template["price"]
            runs.append(started.json()["run"]["id"])
            spent += Decimal(template["price"])
        for run_id in runs:
            run = wait_for(http, f"/v1/workflow-runs/{run_id}", {"succeeded", "failed", "canceled"}, 120)
            assert run["status"] == "succeeded", [(s["key"], s["status"], s["error"]) for s in run["steps"]]
            assert all(step["status"] == "succeeded" for step in run["steps"])
            assert run["steps"][-1]["outputs"], "the final video is delivered"
        assert Decimal(1) + Decimal(20) + Decimal(12) == sum(Decimal(t["price"]) for t in templates.values())
        balance_is(spent)

        # Tasks: the studio tasks are listed; workflow steps are the run's own.
        tasks = http.get("/v1/tasks").json()["items"]
        assert {t["kind"] for t in tasks} >= {"image", "video"}

        # Usage and Billing agree with the balance.
        usage = http.get("/v1/usage", params={"group_by": "model"}).json()
        assert Decimal(usage["total"]) == spent
        by_kind = http.get("/v1/usage", params={"group_by": "kind"}).json()
        assert Decimal(by_kind["total"]) == spent
        consumption = http.get("/v1/billing/records", params={"type": "consumption", "limit": 100}).json()[
            "items"
        ]
        assert sum(-Decimal(r["delta"]) for r in consumption) == spent

    assert stack.reconcile().returncode == 0
