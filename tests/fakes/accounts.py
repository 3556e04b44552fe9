"""The one in-test fake of the AccountsService: the two RPCs the gateway asks on every signed-in request
(`CheckSession`) and before spending (`GetUser` of the caller). Every session is live and every user is
as the caller's access token says, as the real service answers for a user whose token is current
(`test_contract_accounts.py` checks it against the real servicer). Other RPCs answer UNIMPLEMENTED."""

from __future__ import annotations

import grpc

from atelier.accounts.v1 import accounts_pb2, accounts_pb2_grpc
from kit.identity import caller

_ROLES = {"user": accounts_pb2.ROLE_USER, "admin": accounts_pb2.ROLE_ADMIN}
_STATUSES = {
    "unverified": accounts_pb2.USER_STATUS_UNVERIFIED,
    "active": accounts_pb2.USER_STATUS_ACTIVE,
    "disabled": accounts_pb2.USER_STATUS_DISABLED,
}


def _caller_as_user(context: grpc.aio.ServicerContext) -> accounts_pb2.User:
    identity = caller(context)
    return accounts_pb2.User(
        id=identity.user_id, role=_ROLES[identity.role], status=_STATUSES[identity.status]
    )


class FakeAccounts(accounts_pb2_grpc.AccountsServiceServicer):
    async def CheckSession(
        self, request: accounts_pb2.CheckSessionRequest, context: grpc.aio.ServicerContext
    ) -> accounts_pb2.CheckSessionResponse:
        return accounts_pb2.CheckSessionResponse(user=_caller_as_user(context))

    async def GetUser(
        self, request: accounts_pb2.GetUserRequest, context: grpc.aio.ServicerContext
    ) -> accounts_pb2.GetUserResponse:
        return accounts_pb2.GetUserResponse(user=_caller_as_user(context))
