"""Signed-in callers for gateway tests: access tokens minted with the gateway's own development keys."""

from __future__ import annotations

from gateway.auth import AccessTokens
from gateway.settings import GatewaySettings
from kit.identity import Identity, Role, Status

_TOKENS = AccessTokens(GatewaySettings())


def as_user(user_id: str, status: Status = "active", role: Role = "user") -> dict[str, str]:
    token = _TOKENS.mint(Identity(user_id=user_id, role=role, status=status), session_id="test-session").token
    return {"Authorization": f"Bearer {token}"}
