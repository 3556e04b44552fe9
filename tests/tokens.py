"""Signed-in callers for gateway tests: access tokens minted with the gateway's own development keys,
and, for suites that test something other than sign-in, an accounts service that knows only one
thing: every session those tokens name is live, and its user is as the token says."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import grpc

from atelier.accounts.v1 import accounts_pb2, accounts_pb2_grpc
from gateway.auth import AccessTokens
from gateway.settings import GatewaySettings
from kit.grpc_server import GrpcServer
from kit.identity import Identity, Role, Status, caller

_TOKENS = AccessTokens(GatewaySettings())
_ROLES = {"user": accounts_pb2.ROLE_USER, "admin": accounts_pb2.ROLE_ADMIN}
_STATUSES = {
    "unverified": accounts_pb2.USER_STATUS_UNVERIFIED,
    "active": accounts_pb2.USER_STATUS_ACTIVE,
    "disabled": accounts_pb2.USER_STATUS_DISABLED,
}


def as_user(user_id: str, status: Status = "active", role: Role = "user") -> dict[str, str]:
    token = _TOKENS.mint(Identity(user_id=user_id, role=role, status=status), session_id="test-session").token
    return {"Authorization": f"Bearer {token}"}


class LiveSessions(accounts_pb2_grpc.AccountsServiceServicer):
    """The gateway's session check (`CheckSession`), answered from the token's own claims."""

    async def CheckSession(
        self, request: accounts_pb2.CheckSessionRequest, context: grpc.aio.ServicerContext
    ) -> accounts_pb2.CheckSessionResponse:
        identity = caller(context)
        user = accounts_pb2.User(
            id=identity.user_id, role=_ROLES[identity.role], status=_STATUSES[identity.status]
        )
        return accounts_pb2.CheckSessionResponse(user=user)


@asynccontextmanager
async def live_sessions() -> AsyncIterator[str]:
    """An accounts address for `GatewaySettings(accounts_addr=...)` where every session is live."""
    server = GrpcServer("accounts-sessions", host="127.0.0.1", port=0)
    accounts_pb2_grpc.add_AccountsServiceServicer_to_server(LiveSessions(), server.server)  # type: ignore[abstract]
    port = await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(0.2)
