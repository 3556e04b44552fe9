"""Every endpoint that needs a caller, with no token and with bad, expired, forged and tampered ones: 401."""

from __future__ import annotations

import base64
import json
import time
import uuid
from typing import Any

import httpx
import jwt
import pytest

from gateway.settings import GatewaySettings
from tests.e2e.stack import Stack
from tests.hostile.conftest import Owned

pytestmark = pytest.mark.slow


def secured(stack: Stack) -> list[tuple[str, str]]:
    schema = httpx.get(f"{stack.base_url}/openapi.json").json()
    found = []
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            if operation.get("security"):
                found.append((method.upper(), path))
    return found


def concrete(path: str) -> str:
    """Fill every path parameter with a random id."""
    out = []
    for part in path.split("/"):
        out.append(uuid.uuid4().hex if part.startswith("{") else part)
    return "/".join(out)


def bad_tokens(owner: Owned) -> dict[str, str]:
    header, payload, signature = owner.token.split(".")
    claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    kid, secret = GatewaySettings().signing_keys()[0]
    now = int(time.time())
    expired = jwt.encode(
        claims | {"iat": now - 7200, "exp": now - 3600}, secret, algorithm="HS256", headers={"kid": kid}
    )
    forged = jwt.encode(
        claims | {"role": "admin"}, "not-the-secret-" * 4, algorithm="HS256", headers={"kid": kid}
    )
    unknown_kid = jwt.encode(claims, secret, algorithm="HS256", headers={"kid": "other"})
    unsigned = jwt.encode(claims, None, algorithm="none")  # type: ignore[arg-type]
    other_sub = base64.urlsafe_b64encode(json.dumps(claims | {"sub": uuid.uuid4().hex}).encode()).rstrip(b"=")
    tampered = f"{header}.{other_sub.decode()}.{signature}"
    wrong_audience = jwt.encode(
        claims | {"aud": "someone-else"}, secret, algorithm="HS256", headers={"kid": kid}
    )
    return {
        "garbage": "not-a-token",
        "empty-ish": ".",
        "expired": expired,
        "forged": forged,
        "unknown kid": unknown_kid,
        "alg none": unsigned,
        "tampered": tampered,
        "wrong audience": wrong_audience,
    }


def test_every_secured_endpoint_needs_a_valid_token(stack: Stack, alice: Owned) -> None:
    endpoints = secured(stack)
    assert len(endpoints) > 40
    tokens = bad_tokens(alice)
    # The stack signs with the development key these tokens use: a fresh token minted the same way works.
    assert alice.http.get("/v1/me").status_code == 200
    with httpx.Client(base_url=stack.base_url, timeout=30) as http:
        for method, template in endpoints:
            path = concrete(template)
            for name, token in [("none", ""), *tokens.items()]:
                headers = {"Authorization": f"Bearer {token}"} if token else {}
                headers["Idempotency-Key"] = str(uuid.uuid4())
                reply = http.request(method, path, headers=headers, json={})
                assert reply.status_code == 401, (method, template, name, reply.status_code, reply.text)
                assert reply.headers["content-type"].startswith("application/problem+json")
                assert "Traceback" not in reply.text
        # A scheme other than Bearer, and an API key that does not exist.
        for headers in ({"Authorization": "Basic YTpi"}, {"Authorization": "Bearer atk_" + "x" * 40}):
            assert http.get("/v1/me", headers=headers).status_code == 401
