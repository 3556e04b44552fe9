"""Every admin route refuses plain users (403 admin_required) and anonymous callers (401) before
any service is asked: this gateway has no service behind it at all."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from gateway.app import create_app
from gateway.auth import AccessTokens
from gateway.settings import GatewaySettings
from kit.identity import Identity
from tests.admin.conftest import serving, settings_for
from tests.infra import Infra

_FILL = {"code": "grok-video-3", "user_id": str(uuid.uuid4()), "spend_id": "tr-1"}


def admin_routes() -> list[tuple[str, str]]:
    """(method, path) of every route under /v1/admin the app serves, placeholders filled."""
    routes = []
    for template, operations in create_app(GatewaySettings()).openapi()["paths"].items():
        if template.startswith("/v1/admin"):
            path = re.sub(r"\{(\w+)\}", lambda m: _FILL[m.group(1)], template)
            routes.extend((method.upper(), path) for method in sorted(operations))
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


@pytest.fixture(scope="module")
async def bare(infra: Infra) -> AsyncIterator[tuple[httpx.AsyncClient, AccessTokens]]:
    settings = settings_for(infra)  # every service address is unreachable
    async with serving(settings) as (_, http):
        yield http, AccessTokens(settings)


@pytest.mark.parametrize(("method", "path"), ROUTES, ids=[f"{m} {p}" for m, p in ROUTES])
async def test_users_get_403_and_strangers_401(
    bare: tuple[httpx.AsyncClient, AccessTokens], method: str, path: str
) -> None:
    http, tokens = bare
    user = tokens.mint(Identity(user_id=str(uuid.uuid4())), session_id="s").token
    body = {} if method in ("POST", "PUT", "PATCH") else None
    headers = {"Authorization": f"Bearer {user}", "Idempotency-Key": "k-1"}
    refused = await http.request(method, path, json=body, headers=headers)
    assert refused.status_code == 403, refused.text
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert refused.json()["code"] == "admin_required"

    anonymous = await http.request(method, path, json=body)
    assert anonymous.status_code == 401
    assert anonymous.json()["code"] == "unauthenticated"
