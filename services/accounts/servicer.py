"""gRPC transport for the accounts service: protobuf in, a domain call, protobuf out.

Each RPC owns its unit of work; mail is queued only after the transaction has committed, so a rolled
back registration never sends a link.
"""

from __future__ import annotations

from typing import TypeAlias

import grpc

from atelier.accounts.v1 import accounts_pb2 as pb
from atelier.accounts.v1 import accounts_pb2_grpc
from atelier.common.v1 import common_pb2
from kit.db import Database
from kit.identity import caller, require_admin
from kit.protoconv import enum_by_name, optional_timestamp, timestamp, to_datetime
from services.accounts import repository as repo
from services.accounts.mailer import MailQueue
from services.accounts.service import AccountsService, CommitThenRaise, IssuedSession

Context: TypeAlias = grpc.aio.ServicerContext

_ROLE = enum_by_name(pb.Role)
_ROLE_NAME = {value: key for key, value in _ROLE.items()}
_STATUS = enum_by_name(pb.UserStatus)
_STATUS_NAME = {value: key for key, value in _STATUS.items()}


def user_pb(user: repo.User) -> pb.User:
    return pb.User(
        id=str(user.id),
        email=user.email,
        role=_ROLE[user.role],
        status=_STATUS[user.status],
        locale=user.locale,
        created_at=optional_timestamp(user.created_at),
        email_verified_at=optional_timestamp(user.email_verified_at),
        updated_at=optional_timestamp(user.updated_at),
    )


def api_key_pb(key: repo.ApiKey) -> pb.ApiKey:
    return pb.ApiKey(
        id=str(key.id),
        name=key.name,
        prefix=key.prefix,
        scopes=list(key.scopes),
        created_at=optional_timestamp(key.created_at),
        last_used_at=optional_timestamp(key.last_used_at),
        expires_at=optional_timestamp(key.expires_at),
        revoked_at=optional_timestamp(key.revoked_at),
    )


def _refresh_pb(issued: IssuedSession) -> pb.RefreshToken:
    return pb.RefreshToken(
        token=issued.token,
        session_id=str(issued.session_id),
        expires_at=timestamp(issued.expires_at),
    )


class AccountsServicer(accounts_pb2_grpc.AccountsServiceServicer):
    def __init__(self, db: Database, service: AccountsService, mail: MailQueue) -> None:
        self.db = db
        self.service = service
        self.mail = mail

    async def Register(self, request: pb.RegisterRequest, context: Context) -> pb.RegisterResponse:
        async with self.db.transaction() as session:
            user, mail = await self.service.register(
                session, email=request.email, password=request.password, locale=request.locale
            )
        self.mail.submit(mail)
        return pb.RegisterResponse(user=user_pb(user))

    async def VerifyEmail(self, request: pb.VerifyEmailRequest, context: Context) -> pb.VerifyEmailResponse:
        async with self.db.transaction() as session:
            user = await self.service.verify_email(session, token=request.token)
        return pb.VerifyEmailResponse(user=user_pb(user))

    async def ResendVerification(
        self, request: pb.ResendVerificationRequest, context: Context
    ) -> pb.ResendVerificationResponse:
        async with self.db.transaction() as session:
            mail = await self.service.resend_verification(session, email=request.email)
        if mail is not None:
            self.mail.submit(mail)
        return pb.ResendVerificationResponse()

    async def Login(self, request: pb.LoginRequest, context: Context) -> pb.LoginResponse:
        async with self.db.transaction() as session:
            issued = await self.service.login(
                session,
                email=request.email,
                password=request.password,
                ip=request.client.ip,
                user_agent=request.client.user_agent,
            )
        return pb.LoginResponse(user=user_pb(issued.user), refresh_token=_refresh_pb(issued))

    async def RefreshSession(
        self, request: pb.RefreshSessionRequest, context: Context
    ) -> pb.RefreshSessionResponse:
        async with self.db.transaction() as session:
            outcome = await self.service.refresh(
                session,
                token=request.refresh_token,
                ip=request.client.ip,
                user_agent=request.client.user_agent,
            )
        if isinstance(outcome, CommitThenRaise):
            raise outcome.error
        return pb.RefreshSessionResponse(user=user_pb(outcome.user), refresh_token=_refresh_pb(outcome))

    async def Logout(self, request: pb.LogoutRequest, context: Context) -> pb.LogoutResponse:
        async with self.db.transaction() as session:
            await self.service.logout(session, token=request.refresh_token, all_sessions=request.all_sessions)
        return pb.LogoutResponse()

    async def RequestPasswordReset(
        self, request: pb.RequestPasswordResetRequest, context: Context
    ) -> pb.RequestPasswordResetResponse:
        async with self.db.transaction() as session:
            mail = await self.service.request_password_reset(session, email=request.email)
        if mail is not None:
            self.mail.submit(mail)
        return pb.RequestPasswordResetResponse()

    async def ConfirmPasswordReset(
        self, request: pb.ConfirmPasswordResetRequest, context: Context
    ) -> pb.ConfirmPasswordResetResponse:
        async with self.db.transaction() as session:
            await self.service.confirm_password_reset(
                session, token=request.token, new_password=request.new_password
            )
        return pb.ConfirmPasswordResetResponse()

    async def GetUser(self, request: pb.GetUserRequest, context: Context) -> pb.GetUserResponse:
        identity = caller(context)
        async with self.db.transaction() as session:
            user = await self.service.get_user(session, caller=identity, user_id=request.user_id)
        return pb.GetUserResponse(user=user_pb(user))

    async def CheckSession(
        self, request: pb.CheckSessionRequest, context: Context
    ) -> pb.CheckSessionResponse:
        identity = caller(context)
        async with self.db.transaction() as session:
            user = await self.service.check_session(session, caller=identity, session_id=request.session_id)
        return pb.CheckSessionResponse(user=user_pb(user))

    async def CreateApiKey(
        self, request: pb.CreateApiKeyRequest, context: Context
    ) -> pb.CreateApiKeyResponse:
        identity = caller(context)
        expires_at = to_datetime(request.expires_at) if request.HasField("expires_at") else None
        async with self.db.transaction() as session:
            key, plaintext = await self.service.create_api_key(
                session,
                caller=identity,
                name=request.name,
                scopes=list(request.scopes),
                expires_at=expires_at,
            )
        return pb.CreateApiKeyResponse(api_key=api_key_pb(key), plaintext=plaintext)

    async def ListApiKeys(self, request: pb.ListApiKeysRequest, context: Context) -> pb.ListApiKeysResponse:
        identity = caller(context)
        async with self.db.transaction() as session:
            page = await self.service.list_api_keys(
                session,
                caller=identity,
                cursor=request.page.cursor,
                limit=request.page.limit,
                include_revoked=request.include_revoked,
            )
        return pb.ListApiKeysResponse(
            api_keys=[api_key_pb(key) for key in page.items],
            page=common_pb2.PageInfo(next_cursor=page.next_cursor),
        )

    async def RevokeApiKey(
        self, request: pb.RevokeApiKeyRequest, context: Context
    ) -> pb.RevokeApiKeyResponse:
        identity = caller(context)
        async with self.db.transaction() as session:
            key = await self.service.revoke_api_key(session, caller=identity, key_id=request.api_key_id)
        return pb.RevokeApiKeyResponse(api_key=api_key_pb(key))

    async def AuthenticateApiKey(
        self, request: pb.AuthenticateApiKeyRequest, context: Context
    ) -> pb.AuthenticateApiKeyResponse:
        async with self.db.transaction() as session:
            user, key = await self.service.authenticate_api_key(session, key=request.key)
        return pb.AuthenticateApiKeyResponse(
            user=user_pb(user), api_key_id=str(key.id), scopes=list(key.scopes)
        )

    async def ListUsers(self, request: pb.ListUsersRequest, context: Context) -> pb.ListUsersResponse:
        require_admin(context)
        async with self.db.transaction() as session:
            page = await self.service.list_users(
                session,
                cursor=request.page.cursor,
                limit=request.page.limit,
                email_query=request.email_query,
                status=_STATUS_NAME.get(request.status),
                role=_ROLE_NAME.get(request.role),
            )
        return pb.ListUsersResponse(
            users=[user_pb(user) for user in page.items],
            page=common_pb2.PageInfo(next_cursor=page.next_cursor),
        )

    async def SetUserStatus(
        self, request: pb.SetUserStatusRequest, context: Context
    ) -> pb.SetUserStatusResponse:
        identity = require_admin(context)
        async with self.db.transaction() as session:
            user = await self.service.set_user_status(
                session, caller=identity, user_id=request.user_id, status=_STATUS_NAME.get(request.status, "")
            )
        return pb.SetUserStatusResponse(user=user_pb(user))

    async def SetUserRole(self, request: pb.SetUserRoleRequest, context: Context) -> pb.SetUserRoleResponse:
        identity = require_admin(context)
        async with self.db.transaction() as session:
            user = await self.service.set_user_role(
                session, caller=identity, user_id=request.user_id, role=_ROLE_NAME.get(request.role, "")
            )
        return pb.SetUserRoleResponse(user=user_pb(user))

    async def EnsureAdmin(self, request: pb.EnsureAdminRequest, context: Context) -> pb.EnsureAdminResponse:
        # Over the network only an admin may do this; the first admin is made at startup or by the CLI.
        require_admin(context)
        async with self.db.transaction() as session:
            user, created = await self.service.ensure_admin(
                session, email=request.email, password=request.password, locale=request.locale
            )
        return pb.EnsureAdminResponse(user=user_pb(user), created=created)
