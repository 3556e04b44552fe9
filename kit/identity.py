"""Who is calling: the workload (from its certificate, `kit.tls`) and, when the call is made for a signed-in
user, that user (from the gateway's signed token, `kit.user_tokens`).

`kit.access` establishes both before a handler runs and keeps them for the duration of the call; handlers
ask `caller`, `require_verified`, `require_admin` and `calling_service`. Nothing here reads a header: a
service believes only what `kit.access` verified.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from typing import Literal, get_args

import grpc

from kit.errors import FailedPrecondition, PermissionDenied, Unauthenticated

Role = Literal["user", "admin"]
Status = Literal["unverified", "active", "disabled"]
ROLES: tuple[str, ...] = get_args(Role)
STATUSES: tuple[str, ...] = get_args(Status)


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


@dataclass(frozen=True, slots=True)
class Caller:
    """The verified caller of the call being served. `token` is the user token it carried, forwarded on
    this call's synchronous hops (`kit.grpc_client`); an identity without one is a workload acting for the
    owner of a record it holds (`kit.access.Grant.for_owner`)."""

    workload: str
    identity: Identity | None = None
    token: str | None = None


CURRENT: ContextVar[Caller | None] = ContextVar("atelier_caller", default=None)


def caller(context: grpc.aio.ServicerContext) -> Identity:
    """The user this call acts for; refuses calls made for no user, or for a disabled one."""
    current = CURRENT.get()
    if current is None or current.identity is None:
        raise Unauthenticated("this call needs an authenticated caller")
    if current.identity.status == "disabled":
        raise PermissionDenied("this account is disabled", code="account_disabled")
    return current.identity


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
    """Which workload placed the call ("gateway", "workflow", ...), as its certificate says."""
    current = CURRENT.get()
    return current.workload if current is not None else ""
