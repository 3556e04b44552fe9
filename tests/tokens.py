"""Signed-in callers for gateway tests: access tokens minted with the gateway's own development keys,
and, for suites that test something other than sign-in, an accounts service that knows only one
thing: every session those tokens name is live, and its user is as the token says."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from atelier.accounts.v1 import accounts_pb2_grpc
from gateway.auth import AccessTokens
from gateway.settings import GatewaySettings
from kit.identity import Identity, Role, Status
from tests.fakes.accounts import FakeAccounts
from tests.fakes.serve import serve

_TOKENS = AccessTokens(GatewaySettings())


def as_user(user_id: str, status: Status = "active", role: Role = "user") -> dict[str, str]:
    token = _TOKENS.mint(Identity(user_id=user_id, role=role, status=status), session_id="test-session").token
    return {"Authorization": f"Bearer {token}"}


@asynccontextmanager
async def live_sessions() -> AsyncIterator[str]:
    """An accounts address for `GatewaySettings(accounts_addr=...)` where every session is live
    (`tests.fakes.accounts.FakeAccounts`)."""
    # RPCs a fake leaves out answer UNIMPLEMENTED (the generated base); only its stub calls them abstract.
    fake = FakeAccounts()  # type: ignore[abstract]
    async with serve(
        "accounts-sessions", (accounts_pb2_grpc.add_AccountsServiceServicer_to_server, fake)
    ) as address:
        yield address
