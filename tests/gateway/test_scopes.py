"""API-key scopes at the edge, route by route: the gateway app in front of the real accounts service
(nothing else answers: a refusal here happens before any other service is asked).

"read" reads, "write" changes the caller's own things (submit, cancel, recharge, ...), "admin" is
needed on top of the admin role for every admin route that changes anything, and only an admin can
put it on a key."""

from __future__ import annotations

import re
import uuid
from typing import Any

import grpc
import httpx
import pytest

from atelier.accounts.v1 import accounts_pb2 as pb
from kit.identity import Identity
from services.accounts.__main__ import build_service
from tests import identities
from tests.accounts.stack import PASSWORD, AccountsStack, bearer, login, new_email, verified_user
from tests.gateway_app import openapi_operations

# Mutating routes that take no credentials at all: sign-up, sign-in, reset, provider callbacks, the
# sandbox payer, and the two price calculators. Everything else that is not GET needs a scope.
PUBLIC = {
    "/v1/auth/register",
    "/v1/auth/verify-email",
    "/v1/auth/resend-verification",
    "/v1/auth/login",
    "/v1/auth/refresh",
    "/v1/auth/logout",
    "/v1/auth/password-reset",
    "/v1/auth/password-reset/confirm",
    "/callbacks/stripe",
    "/callbacks/alipay",
    "/callbacks/wechatpay",
    "/callbacks/sandbox",
    "/pay/{order_id}",
    "/v1/quotes",
    "/v1/recharge-quotes",
}
MUTATING = {"post", "put", "patch", "delete"}


def user_routes() -> list[tuple[str, str]]:
    """(method, path) of every mutating route outside /v1/admin, placeholders filled."""
    routes = []
    for template, method, operation in openapi_operations():
        if method not in MUTATING:
            continue
        if template.startswith("/v1/admin"):
            continue  # tests/gateway/admin/test_access.py holds the admin surface to the same rule
        if template in PUBLIC:
            assert "security" not in operation, f"{template} takes credentials"
            continue
        path = re.sub(r"\{(\w+)\}", lambda _: str(uuid.uuid4()), template)
        routes.append((method.upper(), path))
    return routes


ROUTES = user_routes()


def test_the_mutating_surface_is_all_there() -> None:
    paths = {re.sub(r"[0-9a-f-]{36}", "{id}", path) for _, path in ROUTES}
    for expected in (
        "/v1/tasks",
        "/v1/tasks/{id}/cancel",
        "/v1/uploads",
        "/v1/copy/conversations",
        "/v1/copy/conversations/{id}/messages",
        "/v1/workflow-runs",
        "/v1/workflow-runs/{id}/cancel",
        "/v1/billing/recharges",
        "/v1/api-keys",
        "/v1/api-keys/{id}",
    ):
        assert expected in paths, expected


async def _key(api: httpx.AsyncClient, session: dict[str, Any], scopes: list[str]) -> str:
    created = await api.post(
        "/v1/api-keys", json={"name": "k", "scopes": scopes}, headers=bearer(session["access_token"])
    )
    assert created.status_code == 201, created.text
    return str(created.json()["key"])


async def test_a_read_only_key_changes_nothing_anywhere(
    api: httpx.AsyncClient, accounts_stack: AccountsStack
) -> None:
    _, session = await verified_user(api, accounts_stack)
    key = await _key(api, session, ["read"])
    assert (await api.get("/v1/me", headers=bearer(key))).status_code == 200
    for method, path in ROUTES:
        headers = {**bearer(key), "Idempotency-Key": "k-1", "Content-Type": "application/json"}
        refused = await api.request(method, path, content=b"{}", headers=headers)
        assert refused.status_code == 403, (method, path, refused.status_code, refused.text)
        expected = "session_required" if path.startswith("/v1/api-keys") else "insufficient_scope"
        assert refused.json()["code"] == expected, (method, path)
        if expected == "insufficient_scope":
            assert refused.json()["scope"] == "write"


async def test_only_an_admin_may_put_the_admin_scope_on_a_key(
    api: httpx.AsyncClient, accounts_stack: AccountsStack
) -> None:
    _, session = await verified_user(api, accounts_stack)
    headers = bearer(session["access_token"])
    refused = await api.post("/v1/api-keys", json={"name": "root", "scopes": ["admin"]}, headers=headers)
    assert refused.status_code == 403, refused.text
    assert refused.json()["code"] == "admin_scope_forbidden"
    assert (await api.get("/v1/api-keys", headers=headers)).json()["items"] == []

    # The accounts service decides from the stored role, not from what the caller claims to be.
    claimed = Identity(user_id=session["user"]["id"], role="admin", status="active")
    with pytest.raises(grpc.aio.AioRpcError) as denied:
        await accounts_stack.stub.CreateApiKey(
            pb.CreateApiKeyRequest(name="root", scopes=["admin"]), metadata=identities.user(claimed)
        )
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.aio.AioRpcError) as unknown:
        await accounts_stack.stub.CreateApiKey(
            pb.CreateApiKeyRequest(name="x", scopes=["superuser"]), metadata=identities.user(claimed)
        )
    assert unknown.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    admin_email = new_email("admin")
    async with accounts_stack.db.transaction() as db:
        await build_service(accounts_stack.settings).ensure_admin(
            db, email=admin_email, password=PASSWORD, locale="en"
        )
    admin = bearer((await login(api, admin_email))["access_token"])
    made = await api.post("/v1/api-keys", json={"name": "ops", "scopes": ["admin", "read"]}, headers=admin)
    assert made.status_code == 201, made.text
    assert made.json()["api_key"]["scopes"] == ["admin", "read"]
    me = (await api.get("/v1/me", headers=bearer(made.json()["key"]))).json()
    assert me["scopes"] == ["admin", "read"]
    plain = await api.post("/v1/api-keys", json={"name": "default"}, headers=admin)
    assert plain.json()["api_key"]["scopes"] == ["read", "write"], "admin is never implied"
