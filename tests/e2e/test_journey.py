"""The product document's Getting Started path, as a client walks it, against the whole stack."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import pytest

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
