"""Signed-in callers for gateway tests: access tokens minted with the gateway's own development keys,
and, for suites that test something other than sign-in, an accounts service that knows only one
thing: every session those tokens name is live, and its user is as the token says."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from atelier.accounts.v1 import accounts_pb2_grpc
from gateway.auth import AccessTokens
from gateway.settings import GatewaySettings
from kit.grpc_server import GrpcServer
from kit.identity import Identity, Role, Status
from tests.fakes.accounts import FakeAccounts

_TOKENS = AccessTokens(GatewaySettings())


def as_user(user_id: str, status: Status = "active", role: Role = "user") -> dict[str, str]:
    token = _TOKENS.mint(Identity(user_id=user_id, role=role, status=status), session_id="test-session").token
    return {"Authorization": f"Bearer {token}"}


@asynccontextmanager
async def live_sessions() -> AsyncIterator[str]:
    """An accounts address for `GatewaySettings(accounts_addr=...)` where every session is live
    (`tests.fakes.accounts.FakeAccounts`)."""
    server = GrpcServer("accounts-sessions", host="127.0.0.1", port=0)
    accounts_pb2_grpc.add_AccountsServiceServicer_to_server(FakeAccounts(), server.server)  # type: ignore[abstract]
    port = await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(0.2)
