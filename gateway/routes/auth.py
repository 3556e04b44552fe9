"""Registration, email verification, sessions, password reset, the caller's profile and API keys.

The accounts service keeps users, refresh sessions and keys; the gateway mints the short-lived access
JWTs from the identity accounts returns, and rate limits the unauthenticated endpoints.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from google.protobuf.timestamp_pb2 import Timestamp
from pydantic import BaseModel, Field

from atelier.accounts.v1 import accounts_pb2 as pb
from atelier.common.v1 import common_pb2
from gateway.auth import (
    AuthState,
    CurrentPrincipal,
    SessionPrincipal,
    accounts,
    auth_state,
    client_ip,
    identity_of,
    rate_limited,
)

router = APIRouter(tags=["auth"])
# Responses that carry credentials must never be cached (RFC 6749 §5.1).
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
State = Annotated[AuthState, Depends(auth_state)]

Email = Annotated[str, Field(min_length=3, max_length=254, examples=["ada@example.com"])]
Password = Annotated[str, Field(min_length=1, max_length=1024)]
Token = Annotated[str, Field(min_length=1, max_length=512)]


# -- schemas ----------------------------------------------------------------------------------------
class UserOut(BaseModel):
    id: str
    email: str
    role: Literal["user", "admin"]
    status: Literal["unverified", "active", "disabled"]
    locale: Literal["zh", "en"]
    created_at: datetime | None
    email_verified_at: datetime | None


class RegisterIn(BaseModel):
    email: Email
    password: Password
    locale: Literal["zh", "en"] | None = None


class TokenIn(BaseModel):
    token: Token


class EmailIn(BaseModel):
    email: Email


class LoginIn(BaseModel):
    email: Email
    password: Password


class RefreshIn(BaseModel):
    refresh_token: Token


class LogoutIn(BaseModel):
    refresh_token: Token
    all_sessions: bool = False


class ResetConfirmIn(BaseModel):
    token: Token
    new_password: Password


class SessionOut(BaseModel):
    access_token: str
    token_type: Literal["Bearer"] = "Bearer"
    expires_in: int = Field(description="Seconds until the access token expires.")
    refresh_token: str = Field(description="Opaque; single use: each refresh returns a new one.")
    refresh_expires_at: datetime | None
    session_id: str
    user: UserOut


class Accepted(BaseModel):
    status: Literal["accepted"] = "accepted"
    detail: str


class MeOut(UserOut):
    auth_method: Literal["session", "api_key"]
    scopes: list[str]


class ApiKeyOut(BaseModel):
    id: str
    name: str
    prefix: str
    scopes: list[str]
    created_at: datetime | None
    last_used_at: datetime | None
    expires_at: datetime | None
    revoked_at: datetime | None


class ApiKeyCreateIn(BaseModel):
    name: Annotated[str, Field(min_length=1, max_length=100)]
    scopes: list[Literal["read", "write", "admin"]] = Field(
        default_factory=list,
        description='Empty: read and write. "admin" (admins only) is never implied: ask for it by name.',
    )
    expires_at: datetime | None = None


class ApiKeyCreatedOut(BaseModel):
    api_key: ApiKeyOut
    key: str = Field(description="The full key. Shown once: store it now; only its hash is kept.")


class ApiKeyPage(BaseModel):
    items: list[ApiKeyOut]
    next_cursor: str | None


# -- conversions ------------------------------------------------------------------------------------
def _dt(message: pb.User | pb.ApiKey | pb.RefreshToken, name: str) -> datetime | None:
    if not message.HasField(name):  # type: ignore[arg-type]
        return None
    stamp: Timestamp = getattr(message, name)
    return stamp.ToDatetime(tzinfo=UTC)


def user_out(user: pb.User) -> UserOut:
    identity = identity_of(user)
    return UserOut(
        id=user.id,
        email=user.email,
        role=identity.role,
        status=identity.status,
        locale="zh" if user.locale == "zh" else "en",
        created_at=_dt(user, "created_at"),
        email_verified_at=_dt(user, "email_verified_at"),
    )


def api_key_out(key: pb.ApiKey) -> ApiKeyOut:
    return ApiKeyOut(
        id=key.id,
        name=key.name,
        prefix=key.prefix,
        scopes=list(key.scopes),
        created_at=_dt(key, "created_at"),
        last_used_at=_dt(key, "last_used_at"),
        expires_at=_dt(key, "expires_at"),
        revoked_at=_dt(key, "revoked_at"),
    )


def _session_out(state: AuthState, user: pb.User, refresh: pb.RefreshToken) -> SessionOut:
    access = state.tokens.mint(identity_of(user), refresh.session_id)
    return SessionOut(
        access_token=access.token,
        expires_in=access.expires_in,
        refresh_token=refresh.token,
        refresh_expires_at=_dt(refresh, "expires_at"),
        session_id=refresh.session_id,
        user=user_out(user),
    )


def _client(request: Request) -> pb.ClientInfo:
    return pb.ClientInfo(ip=client_ip(request), user_agent=request.headers.get("user-agent", "")[:512])


async def _limit_ip(request: Request, state: AuthState, what: str) -> None:
    wait = await state.auth_by_ip.take(client_ip(request))
    if wait:
        raise rate_limited(wait, what)


# -- registration and verification ------------------------------------------------------------------
@router.post("/v1/auth/register", status_code=201, response_model=UserOut, summary="Create an account")
async def register(
    body: RegisterIn,
    request: Request,
    state: State,
    accept_language: Annotated[str, Header()] = "",
) -> UserOut:
    """Creates an unverified account and emails a verification link (valid 24 h, single use)."""
    await _limit_ip(request, state, "sign-up attempts")
    locale = body.locale or ("zh" if accept_language.lower().startswith("zh") else "en")
    reply = await accounts(request).Register(
        pb.RegisterRequest(email=body.email, password=body.password, locale=locale)
    )
    return user_out(reply.user)


@router.post("/v1/auth/verify-email", response_model=UserOut, summary="Verify an email address")
async def verify_email(body: TokenIn, request: Request) -> UserOut:
    reply = await accounts(request).VerifyEmail(pb.VerifyEmailRequest(token=body.token))
    return user_out(reply.user)


@router.get(
    "/v1/auth/verify-email/{token}",
    response_model=UserOut,
    summary="Verify an email address by following the link in the mail",
)
async def verify_email_link(token: str, request: Request) -> UserOut:
    reply = await accounts(request).VerifyEmail(pb.VerifyEmailRequest(token=token[:512]))
    return user_out(reply.user)


@router.post(
    "/v1/auth/resend-verification", status_code=202, response_model=Accepted, summary="Send the link again"
)
async def resend_verification(body: EmailIn, request: Request, state: State) -> Accepted:
    """Answers the same whether or not the address has an account (no enumeration); a new mail is
    sent at most once a minute per account."""
    await _limit_ip(request, state, "requests")
    await accounts(request).ResendVerification(pb.ResendVerificationRequest(email=body.email))
    return Accepted(detail="if this address has an unverified account, a new link is on its way")


# -- sessions ---------------------------------------------------------------------------------------
@router.post("/v1/auth/login", response_model=SessionOut, summary="Sign in with email and password")
async def login(body: LoginIn, request: Request, response: Response, state: State) -> SessionOut:
    """Rate limited per IP and per account (429 with Retry-After). A wrong password and an unknown
    email get the same answer."""
    ip_wait = await state.login_by_ip.take(client_ip(request))
    if ip_wait:
        raise rate_limited(ip_wait, "sign-in attempts from this address")
    account = body.email.strip().lower()
    account_wait = await state.login_by_account.take(account)
    if account_wait:
        raise rate_limited(account_wait, "sign-in attempts for this account")
    reply = await accounts(request).Login(
        pb.LoginRequest(email=body.email, password=body.password, client=_client(request))
    )
    await state.login_by_account.reset(account)
    response.headers.update(NO_STORE)
    return _session_out(state, reply.user, reply.refresh_token)


@router.post("/v1/auth/refresh", response_model=SessionOut, summary="Exchange a refresh token")
async def refresh(body: RefreshIn, request: Request, response: Response, state: State) -> SessionOut:
    """Rotates the refresh token. Using a refresh token twice revokes the whole session."""
    reply = await accounts(request).RefreshSession(
        pb.RefreshSessionRequest(refresh_token=body.refresh_token, client=_client(request))
    )
    response.headers.update(NO_STORE)
    return _session_out(state, reply.user, reply.refresh_token)


@router.post("/v1/auth/logout", status_code=204, summary="Sign out (this session or all)")
async def logout(body: LogoutIn, request: Request) -> Response:
    await accounts(request).Logout(
        pb.LogoutRequest(refresh_token=body.refresh_token, all_sessions=body.all_sessions)
    )
    return Response(status_code=204)


# -- password reset ---------------------------------------------------------------------------------
@router.post(
    "/v1/auth/password-reset", status_code=202, response_model=Accepted, summary="Email a reset link"
)
async def password_reset(body: EmailIn, request: Request, state: State) -> Accepted:
    await _limit_ip(request, state, "requests")
    await accounts(request).RequestPasswordReset(pb.RequestPasswordResetRequest(email=body.email))
    return Accepted(detail="if this address has an account, a reset link is on its way")


@router.post(
    "/v1/auth/password-reset/confirm", status_code=204, summary="Set a new password with a reset token"
)
async def password_reset_confirm(body: ResetConfirmIn, request: Request, state: State) -> Response:
    """Sets the password and signs the account out everywhere."""
    await _limit_ip(request, state, "requests")
    await accounts(request).ConfirmPasswordReset(
        pb.ConfirmPasswordResetRequest(token=body.token, new_password=body.new_password)
    )
    return Response(status_code=204)


# -- the caller -------------------------------------------------------------------------------------
@router.get("/v1/me", response_model=MeOut, summary="The signed-in account")
async def me(principal: CurrentPrincipal, request: Request) -> MeOut:
    reply = await accounts(request).GetUser(pb.GetUserRequest(), metadata=principal.metadata())
    return MeOut(
        **user_out(reply.user).model_dump(),
        auth_method=principal.method,
        scopes=sorted(principal.scopes),
    )


# -- API keys ---------------------------------------------------------------------------------------
@router.get("/v1/api-keys", response_model=ApiKeyPage, tags=["api-keys"], summary="Your API keys")
async def list_api_keys(
    principal: CurrentPrincipal,
    request: Request,
    cursor: Annotated[str, Query(max_length=512)] = "",
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    include_revoked: bool = False,
) -> ApiKeyPage:
    reply = await accounts(request).ListApiKeys(
        pb.ListApiKeysRequest(
            page=common_pb2.PageRequest(cursor=cursor, limit=limit), include_revoked=include_revoked
        ),
        metadata=principal.metadata(),
    )
    return ApiKeyPage(
        items=[api_key_out(key) for key in reply.api_keys], next_cursor=reply.page.next_cursor or None
    )


@router.post(
    "/v1/api-keys",
    status_code=201,
    response_model=ApiKeyCreatedOut,
    tags=["api-keys"],
    summary="Create an API key (shown once)",
)
async def create_api_key(
    body: ApiKeyCreateIn, principal: SessionPrincipal, request: Request, response: Response
) -> ApiKeyCreatedOut:
    message = pb.CreateApiKeyRequest(name=body.name, scopes=body.scopes)
    if body.expires_at is not None:
        expires = body.expires_at if body.expires_at.tzinfo else body.expires_at.replace(tzinfo=UTC)
        message.expires_at.FromDatetime(expires)
    reply = await accounts(request).CreateApiKey(message, metadata=principal.metadata())
    response.headers.update(NO_STORE)
    return ApiKeyCreatedOut(api_key=api_key_out(reply.api_key), key=reply.plaintext)


@router.delete(
    "/v1/api-keys/{api_key_id}", response_model=ApiKeyOut, tags=["api-keys"], summary="Revoke an API key"
)
async def revoke_api_key(api_key_id: str, principal: SessionPrincipal, request: Request) -> ApiKeyOut:
    reply = await accounts(request).RevokeApiKey(
        pb.RevokeApiKeyRequest(api_key_id=api_key_id[:64]), metadata=principal.metadata()
    )
    return api_key_out(reply.api_key)
