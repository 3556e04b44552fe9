"""Admin routes of users: the accounts list, one user with their balance, their billing records,
status and role changes, and credit adjustments (once per Idempotency-Key)."""

from __future__ import annotations

import hashlib
import re
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Query, Request, Response

from atelier.accounts.v1 import accounts_pb2
from atelier.ledger.v1 import ledger_pb2
from gateway.auth import AdminPrincipal
from gateway.convert import to_json
from gateway.problems import Problem
from gateway.routes.admin.bodies import AdjustmentIn, UserRoleIn, UserStatusIn, credits_pb
from gateway.routes.admin.common import (
    Cursor,
    Limit,
    UserId,
    accounts_stub,
    ledger_stub,
    page_json,
    page_request,
)
from kit.protoconv import enum_by_name

IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")

router = APIRouter()

_STATUSES = enum_by_name(accounts_pb2.UserStatus)
_ROLES = enum_by_name(accounts_pb2.Role)
_RECORD_TYPES = enum_by_name(ledger_pb2.RecordType)


def transfer_id_for(admin_id: str, idempotency_key: str) -> str:
    """The same admin and key always name the same adjustment; different admins never collide."""
    digest = hashlib.sha256(f"{admin_id}\x00{idempotency_key}".encode()).hexdigest()
    return f"adj_{digest[:32]}"


def _require_key(idempotency_key: str | None) -> str:
    if not idempotency_key or not IDEMPOTENCY_KEY.match(idempotency_key):
        raise Problem(
            400, "idempotency_key_required", "send an Idempotency-Key header (1-255 visible characters)"
        )
    return idempotency_key


@router.get("/users", summary="Users, oldest first, filtered by email, status or role")
async def list_users(
    request: Request,
    principal: AdminPrincipal,
    email: Annotated[str, Query(max_length=320, description="substring, case-insensitive")] = "",
    status: Annotated[Literal["unverified", "active", "disabled"] | None, Query()] = None,
    role: Annotated[Literal["user", "admin"] | None, Query()] = None,
    cursor: Cursor = "",
    limit: Limit = 50,
) -> dict[str, Any]:
    reply = await accounts_stub(request).ListUsers(
        accounts_pb2.ListUsersRequest(
            page=page_request(cursor, limit),
            email_query=email,
            status=_STATUSES[status] if status else accounts_pb2.USER_STATUS_UNSPECIFIED,
            role=_ROLES[role] if role else accounts_pb2.ROLE_UNSPECIFIED,
        ),
        metadata=principal.metadata(),
    )
    return page_json(reply.users, reply.page)


async def _user(request: Request, principal: AdminPrincipal, user_id: str) -> accounts_pb2.User:
    reply: accounts_pb2.GetUserResponse = await accounts_stub(request).GetUser(
        accounts_pb2.GetUserRequest(user_id=user_id), metadata=principal.metadata()
    )
    return reply.user


@router.get("/users/{user_id}", summary="One user with their balance from the ledger")
async def get_user(request: Request, principal: AdminPrincipal, user_id: UserId) -> dict[str, Any]:
    user = await _user(request, principal, user_id)
    balance = await ledger_stub(request).GetBalance(
        ledger_pb2.GetBalanceRequest(user_id=user.id), metadata=principal.metadata()
    )
    return {"user": to_json(user), "balance": to_json(balance.balance)}


@router.get("/users/{user_id}/records", summary="A user's billing records, newest first")
async def user_records(
    request: Request,
    principal: AdminPrincipal,
    user_id: UserId,
    type: Annotated[
        list[Literal["recharge", "consumption", "refund", "adjustment", "callback"]] | None, Query()
    ] = None,
    cursor: Cursor = "",
    limit: Limit = 50,
) -> dict[str, Any]:
    user = await _user(request, principal, user_id)
    reply = await ledger_stub(request).ListRecords(
        ledger_pb2.ListRecordsRequest(
            user_id=user.id, page=page_request(cursor, limit), types=[_RECORD_TYPES[t] for t in type or []]
        ),
        metadata=principal.metadata(),
    )
    return page_json(reply.records, reply.page)


@router.post("/users/{user_id}/status", summary="Activate or disable a user (disabling ends their sessions)")
async def set_user_status(
    request: Request, principal: AdminPrincipal, user_id: UserId, body: UserStatusIn
) -> dict[str, Any]:
    reply = await accounts_stub(request).SetUserStatus(
        accounts_pb2.SetUserStatusRequest(user_id=user_id, status=_STATUSES[body.status], reason=body.reason),
        metadata=principal.metadata(),
    )
    return {"user": to_json(reply.user)}


@router.post("/users/{user_id}/role", summary="Make a user an admin, or an admin a user")
async def set_user_role(
    request: Request, principal: AdminPrincipal, user_id: UserId, body: UserRoleIn
) -> dict[str, Any]:
    reply = await accounts_stub(request).SetUserRole(
        accounts_pb2.SetUserRoleRequest(user_id=user_id, role=_ROLES[body.role]),
        metadata=principal.metadata(),
    )
    return {"user": to_json(reply.user)}


@router.post(
    "/users/{user_id}/credit-adjustments",
    status_code=201,
    summary="Credit (positive) or debit (negative) a user's wallet, once per Idempotency-Key",
)
async def adjust_credits(
    request: Request,
    response: Response,
    principal: AdminPrincipal,
    user_id: UserId,
    body: AdjustmentIn,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> dict[str, Any]:
    key = _require_key(idempotency_key)
    user = await _user(request, principal, user_id)  # 404 for an unknown user: no wallet is made
    reply = await ledger_stub(request).Adjust(
        ledger_pb2.AdjustRequest(
            transfer_id=transfer_id_for(principal.user_id, key),
            user_id=user.id,
            amount=credits_pb(body.amount),
            reason=body.reason,
            actor_id=principal.user_id,
        ),
        metadata=principal.metadata(),
    )
    if reply.replayed:
        response.status_code = 200
    return {
        "transfer": to_json(reply.transfer),
        "balance": to_json(reply.balance),
        "replayed": reply.replayed,
    }
