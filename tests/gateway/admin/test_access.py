"""Every admin route refuses plain users (403 admin_required) and anonymous callers (401), and an
admin's API key without the `admin` scope (403 insufficient_scope) on every route that changes
anything, before any service but accounts is asked: this gateway has no other service behind it."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import httpx
import pytest

from atelier.accounts.v1 import accounts_pb2
from gateway.app import create_app
from gateway.auth import AccessTokens
from tests.accounts.stack import PASSWORD, AccountsStack, new_email
from tests.gateway.admin.conftest import ensure_admin, settings_for, sign_in
from tests.gateway_app import openapi_operations, serving
from tests.infra import Infra

if TYPE_CHECKING:
    from atelier.accounts.v1.accounts_pb2_grpc import AccountsServiceAsyncStub

_FILL = {"code": "grok-video-3", "user_id": str(uuid.uuid4()), "spend_id": "tr-1"}


def admin_routes() -> list[tuple[str, str]]:
    """(method, path) of every route under /v1/admin the app serves, placeholders filled."""
    routes: list[tuple[str, str]] = []
    for template, method, _ in openapi_operations():
        if template.startswith("/v1/admin"):
            path = re.sub(r"\{(\w+)\}", lambda m: _FILL[m.group(1)], template)
            routes.append((method.upper(), path))
    return routes


ROUTES = admin_routes()


def test_the_admin_surface_is_all_there() -> None:
    paths = {path for _, path in ROUTES}
    for expected in (
        "/v1/admin/models",
        "/v1/admin/models/grok-video-3/enable",
        "/v1/admin/default-capabilities",
        "/v1/admin/templates/grok-video-3",
        "/v1/admin/recharge-rules",
        "/v1/admin/plans/grok-video-3",
        "/v1/admin/channels/grok-video-3",
        f"/v1/admin/users/{_FILL['user_id']}/credit-adjustments",
        "/v1/admin/audit",
        "/v1/admin/spend/tr-1",
        "/v1/admin/reconcile",
    ):
        assert expected in paths
    assert len(ROUTES) >= 27


@dataclass
class Bare:
    """A gateway with only the accounts service behind it: who may call what is settled there."""

    http: httpx.AsyncClient
    tokens: AccessTokens
    accounts: AccountsServiceAsyncStub
    user: str = ""
    admin: str = ""
    keys: dict[str, str] = field(default_factory=dict)

    async def key(self, *scopes: str) -> str:
        """An API key of the admin with these scopes (made once per set)."""
        name = ",".join(scopes)
        if name not in self.keys:
            made = await self.http.post(
                "/v1/api-keys", json={"name": name, "scopes": list(scopes)}, headers=_bearer(self.admin)
            )
            assert made.status_code == 201, made.text
            self.keys[name] = made.json()["key"]
        return self.keys[name]


def _bearer(credential: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {credential}", "Idempotency-Key": "k-1"}


@pytest.fixture(scope="module")
async def bare(infra: Infra, accounts_stack: AccountsStack) -> AsyncIterator[Bare]:
    settings = settings_for(infra, accounts=f"127.0.0.1:{accounts_stack.port}")  # nothing else answers
    async with serving(create_app(settings)) as http:
        bare = Bare(http, AccessTokens(settings), accounts_stack.stub)
        email = new_email("member")
        await accounts_stack.stub.Register(
            accounts_pb2.RegisterRequest(email=email, password=PASSWORD, locale="en")
        )
        bare.user = await sign_in(accounts_stack.stub, bare.tokens, email)
        _, admin_email = await ensure_admin(accounts_stack.stub)
        bare.admin = await sign_in(accounts_stack.stub, bare.tokens, admin_email)
        yield bare


def _body(method: str) -> dict[str, str] | None:
    return {} if method in ("POST", "PUT", "PATCH") else None


@pytest.mark.parametrize(("method", "path"), ROUTES, ids=[f"{m} {p}" for m, p in ROUTES])
async def test_users_get_403_and_strangers_401(bare: Bare, method: str, path: str) -> None:
    refused = await bare.http.request(method, path, json=_body(method), headers=_bearer(bare.user))
    assert refused.status_code == 403, refused.text
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert refused.json()["code"] == "admin_required"

    anonymous = await bare.http.request(method, path, json=_body(method))
    assert anonymous.status_code == 401
    assert anonymous.json()["code"] == "unauthenticated"


@pytest.mark.parametrize(("method", "path"), ROUTES, ids=[f"{m} {p}" for m, p in ROUTES])
async def test_an_admins_key_needs_the_admin_scope_to_change_anything(
    bare: Bare, method: str, path: str
) -> None:
    """Reads take "read" (or "admin"); every other method takes "admin", whatever else the key has."""
    for scopes in (("read",), ("read", "write")):
        answer = await bare.http.request(
            method, path, json=_body(method), headers=_bearer(await bare.key(*scopes))
        )
        if method == "GET":
            assert answer.status_code not in (401, 403), (scopes, answer.text)
        else:
            assert answer.status_code == 403, (scopes, answer.text)
            assert answer.json()["code"] == "insufficient_scope"
            assert answer.json()["scope"] == "admin"
    for scopes in (("admin",), ("admin", "read")):
        answer = await bare.http.request(
            method, path, json=_body(method), headers=_bearer(await bare.key(*scopes))
        )
        assert answer.status_code not in (401, 403), (scopes, answer.text)
    writer = await bare.http.request(
        method, path, json=_body(method), headers=_bearer(await bare.key("write"))
    )
    if method == "GET":
        assert writer.status_code == 403
        assert writer.json()["scope"] == "read"
