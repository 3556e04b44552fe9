"""The caller's identity, verified by the gateway and passed to services in gRPC metadata.

Services trust these headers because only the gateway (and sibling services) can reach them: a
private network, NetworkPolicies, optional mTLS — see docs/security.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import grpc

from kit.errors import FailedPrecondition, PermissionDenied, Unauthenticated

USER_ID_KEY = "x-atelier-user-id"
ROLE_KEY = "x-atelier-user-role"
STATUS_KEY = "x-atelier-user-status"
CALLER_KEY = "x-atelier-caller"

Role = Literal["user", "admin"]
Status = Literal["unverified", "active", "disabled"]


@dataclass(frozen=True, slots=True)
class Identity:
    user_id: str
    role: Role = "user"
    status: Status = "active"

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def verified(self) -> bool:
        return self.status == "active"

    def metadata(self, caller: str = "gateway") -> tuple[tuple[str, str], ...]:
        return (
            (USER_ID_KEY, self.user_id),
            (ROLE_KEY, self.role),
            (STATUS_KEY, self.status),
            (CALLER_KEY, caller),
        )


def _metadata(context: grpc.aio.ServicerContext) -> dict[str, str]:
    return {key: value for key, value in (context.invocation_metadata() or ()) if isinstance(value, str)}


def caller(context: grpc.aio.ServicerContext) -> Identity:
    """The identity on this call; refuses calls that carry none."""
    metadata = _metadata(context)
    user_id = metadata.get(USER_ID_KEY)
    role = metadata.get(ROLE_KEY, "user")
    status = metadata.get(STATUS_KEY, "unverified")
    if not user_id or role not in ("user", "admin") or status not in ("unverified", "active", "disabled"):
        raise Unauthenticated("this call needs an authenticated caller")
    if status == "disabled":
        raise PermissionDenied("this account is disabled", code="account_disabled")
    return Identity(user_id=user_id, role=role, status=status)  # type: ignore[arg-type]


def require_verified(context: grpc.aio.ServicerContext) -> Identity:
    """For calls that spend or move money: unverified accounts may read but not act."""
    identity = caller(context)
    if not identity.verified:
        raise FailedPrecondition("verify your email address first", code="email_not_verified")
    return identity


def require_admin(context: grpc.aio.ServicerContext) -> Identity:
    identity = caller(context)
    if not identity.is_admin:
        raise PermissionDenied("this call needs the admin role", code="admin_required")
    return identity


def calling_service(context: grpc.aio.ServicerContext) -> str:
    """Which service placed the call ("gateway", "workflow", ...), or "" when unnamed."""
    return _metadata(context).get(CALLER_KEY, "")
