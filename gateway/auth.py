"""Authentication at the edge: who is calling, and what they may do.

Clients send `Authorization: Bearer <credential>`, where the credential is either
- a short-lived access JWT minted here at login/refresh (HS256, `kid` header; several keys may verify,
  the newest signs — see `GatewaySettings.jwt_keys`), or
- an API key (`atl_live_...` / `atl_test_...`), checked against the accounts service on every call,
  so a revoked key stops working at once.

A session token's claims are not trusted beyond a few seconds: the session it names is checked with
accounts (`CheckSession`) at most `session_check_ttl_seconds` (<= 5 s) before, per replica, and the
caller's current role and status replace the claimed ones. So a demotion, a disable, a password reset
or a sign-out takes effect on every replica within that bound (docs/security.md).

How other routes use this (billing, tasks, admin, ...):

    from gateway.auth import AdminPrincipal, CurrentPrincipal, VerifiedPrincipal

    @router.get("/v1/tasks")                       # any signed-in caller (unverified may read)
    async def list_tasks(principal: CurrentPrincipal) -> ...:
        await stub.ListTasks(request, metadata=principal.metadata())

    @router.post("/v1/tasks")                      # spends credits: verified email + "write" scope
    async def submit(principal: VerifiedPrincipal) -> ...: ...

    @router.post("/v1/tasks/{id}/cancel")           # changes the caller's things: "write" scope
    async def cancel(principal: WriterPrincipal) -> ...: ...

    @router.get("/v1/admin/users")                 # admin role; API keys: "read" to read, "admin"
    async def users(principal: AdminPrincipal) -> ...: ...   # for every other method

`principal.metadata()` is the verified user as gRPC metadata: a short-lived token signed with the
gateway's key (`kit.user_tokens`), minted per call; services verify it (`kit.access`) and read it with
`kit.identity.caller(context)`, refusing user-scoped calls without it.

Refusals are problem+json: 401 `unauthenticated` / `session_ended` (with `WWW-Authenticate: Bearer`),
403 `account_disabled`, 403 `email_not_verified`, 403 `admin_required`, 403 `insufficient_scope`
(naming the `scope` missing).

Sign-in is rate limited per IP and per account, every authenticated request per account
(`gateway/ratelimits.py`): the limits are kept in NATS, so they hold across gateway replicas.
"""

from __future__ import annotations

import math
import time
import uuid
from dataclasses import dataclass, field, replace
from typing import Annotated, Any, Literal

import grpc
import jwt
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from atelier.accounts.v1 import accounts_pb2 as pb
from atelier.accounts.v1 import accounts_pb2_grpc
from gateway.client_address import ClientAddress
from gateway.problems import WWW_AUTHENTICATE, Problem
from gateway.ratelimits import Limit, Limiter
from gateway.sessions import SessionCache
from gateway.settings import GatewaySettings
from kit.bus import Bus
from kit.errors import DomainError, PermissionDenied, Unauthenticated, from_rpc_error
from kit.identity import Identity, Role, Status
from kit.user_tokens import UserTokenSigner

API_KEY_PREFIXES = ("atl_live_", "atl_test_")
ALL_SCOPES = frozenset({"read", "write", "admin"})
# What a session may do: everything its user may. "admin" only while the user is an admin.
USER_SCOPES = frozenset({"read", "write"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_ROLE: dict[int, Role] = {pb.ROLE_USER: "user", pb.ROLE_ADMIN: "admin"}
_STATUS: dict[int, Status] = {
    pb.USER_STATUS_UNVERIFIED: "unverified",
    pb.USER_STATUS_ACTIVE: "active",
    pb.USER_STATUS_DISABLED: "disabled",
}


@dataclass(frozen=True)
class Principal:
    """The verified caller of one request."""

    identity: Identity
    method: Literal["session", "api_key"]
    scopes: frozenset[str] = USER_SCOPES
    session_id: str | None = None
    api_key_id: str | None = None
    signer: UserTokenSigner | None = field(default=None, repr=False, compare=False)

    @property
    def user_id(self) -> str:
        return self.identity.user_id

    def metadata(self) -> tuple[tuple[str, str], ...]:
        """This user's token for a call to a service (set once the request's caller is resolved)."""
        if self.signer is None:
            raise RuntimeError("a principal acts for a user only once resolved by current_identity")
        return self.signer.metadata(self.identity)


def identity_of(user: pb.User) -> Identity:
    return Identity(
        user_id=user.id, role=_ROLE.get(user.role, "user"), status=_STATUS.get(user.status, "unverified")
    )


def scopes_of(identity: Identity, granted: frozenset[str] = ALL_SCOPES) -> frozenset[str]:
    """The scopes that hold now: the admin scope only while the user is an admin."""
    return granted if identity.is_admin else granted & USER_SCOPES


# -- access tokens ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class AccessToken:
    token: str
    expires_in: int

    def __repr__(self) -> str:
        return f"AccessToken(expires_in={self.expires_in})"


class AccessTokens:
    """Mint and verify access JWTs. The first configured key signs; every configured key verifies."""

    algorithm = "HS256"

    def __init__(self, settings: GatewaySettings) -> None:
        keys = settings.signing_keys()
        self._signing_kid, self._signing_secret = keys[0]
        self._keys = dict(keys)
        self.issuer = settings.jwt_issuer
        self.audience = settings.jwt_audience
        self.ttl = settings.access_token_ttl_seconds

    def mint(self, identity: Identity, session_id: str) -> AccessToken:
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": identity.user_id,
            "role": identity.role,
            "status": identity.status,
            "sid": session_id,
            "iat": now,
            "nbf": now,
            "exp": now + self.ttl,
            "jti": uuid.uuid4().hex,
        }
        token = jwt.encode(
            claims, self._signing_secret, algorithm=self.algorithm, headers={"kid": self._signing_kid}
        )
        return AccessToken(token, self.ttl)

    def verify(self, token: str) -> Principal:
        try:
            kid = jwt.get_unverified_header(token).get("kid")
            secret = self._keys.get(kid) if isinstance(kid, str) else None
            if secret is None:
                raise jwt.InvalidTokenError("unknown key id")
            claims: dict[str, Any] = jwt.decode(
                token,
                secret,
                algorithms=[self.algorithm],
                audience=self.audience,
                issuer=self.issuer,
                options={"require": ["exp", "iat", "sub", "iss", "aud"]},
                leeway=5,
            )
        except jwt.ExpiredSignatureError:
            raise _unauthenticated("the access token has expired; refresh it", "token_expired") from None
        except jwt.InvalidTokenError:
            raise _unauthenticated("the access token is not valid", "invalid_token") from None
        role, status = claims.get("role"), claims.get("status")
        if role not in ("user", "admin") or status not in ("unverified", "active", "disabled"):
            raise _unauthenticated("the access token is not valid", "invalid_token")
        session_id = claims.get("sid")
        if not isinstance(session_id, str) or not session_id:
            raise _unauthenticated("the access token is not valid", "invalid_token")
        identity = Identity(user_id=str(claims["sub"]), role=role, status=status)
        return Principal(identity, method="session", scopes=scopes_of(identity), session_id=session_id)


# -- rate limiting: gateway/ratelimits.py -------------------------------------------------------------
@dataclass
class AuthState:
    tokens: AccessTokens
    login_by_ip: Limiter
    login_by_account: Limiter
    auth_by_ip: Limiter
    api_by_account: Limiter
    sessions: SessionCache
    client_address: ClientAddress
    user_tokens: UserTokenSigner

    @classmethod
    def from_settings(cls, settings: GatewaySettings) -> AuthState:
        if not settings.user_token_signing_key_file:
            raise ValueError("the gateway needs ATELIER_USER_TOKEN_SIGNING_KEY_FILE to act for users")
        return cls(
            tokens=AccessTokens(settings),
            user_tokens=UserTokenSigner.from_file(
                settings.user_token_signing_key_file, ttl=settings.user_token_ttl_seconds
            ),
            login_by_ip=Limiter("login-ip", Limit(settings.login_ip_burst, settings.login_ip_refill_seconds)),
            login_by_account=Limiter(
                "login-account", Limit(settings.login_account_burst, settings.login_account_refill_seconds)
            ),
            auth_by_ip=Limiter("auth-ip", Limit(settings.auth_ip_burst, settings.auth_ip_refill_seconds)),
            api_by_account=Limiter(
                "api-account", Limit(settings.api_account_burst, settings.api_account_refill_seconds)
            ),
            sessions=SessionCache(settings.session_check_ttl_seconds),
            client_address=ClientAddress.from_settings(settings),
        )

    @property
    def limiters(self) -> tuple[Limiter, ...]:
        return (self.login_by_ip, self.login_by_account, self.auth_by_ip, self.api_by_account)

    async def share_limits(self, bus: Bus, replicas: int) -> None:
        """Keep every rate limit in NATS from now on, so it holds across the gateway's replicas."""
        for limiter in self.limiters:
            await limiter.attach(bus, replicas)


def rate_limited(retry_after: float, what: str) -> Problem:
    seconds = max(1, math.ceil(retry_after))
    return Problem(
        429,
        "rate_limited",
        f"too many {what}; try again in {seconds} s",
        headers={"Retry-After": str(seconds)},
        retry_after_seconds=seconds,
    )


def client_ip(request: Request) -> str:
    """The client's address: the peer's, or what our proxies saw (`gateway.client_address`)."""
    peer = request.client.host if request.client else None
    return auth_state(request).client_address.resolve(peer, request.headers.getlist("x-forwarded-for"))


# -- dependencies -----------------------------------------------------------------------------------
def auth_state(request: Request) -> AuthState:
    state: AuthState = request.app.state.auth
    return state


def accounts(request: Request) -> accounts_pb2_grpc.AccountsServiceAsyncStub:
    return accounts_pb2_grpc.AccountsServiceStub(request.app.state.clients.channels["accounts"])  # type: ignore[return-value]


def _unauthenticated(detail: str, code: str = "unauthenticated") -> Problem:
    return Problem(401, code, detail, headers=WWW_AUTHENTICATE)


_bearer = HTTPBearer(auto_error=False, description="An access token from /v1/auth/login, or an API key.")


async def current_identity(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Principal:
    """The caller, from a session JWT or an API key; 401 without valid credentials."""
    if credentials is None or not credentials.credentials:
        raise _unauthenticated("sign in first: send Authorization: Bearer <token>")
    credential = credentials.credentials.strip()
    if credential.startswith(API_KEY_PREFIXES):
        reply = await accounts(request).AuthenticateApiKey(pb.AuthenticateApiKeyRequest(key=credential))
        identity = identity_of(reply.user)
        principal = Principal(
            identity,
            method="api_key",
            scopes=scopes_of(identity, frozenset(reply.scopes) & ALL_SCOPES),
            api_key_id=reply.api_key_id,
        )
        return await _limit_account(request, principal)
    return await _limit_account(request, await session_principal(request, credential))


async def session_principal(request: Request, token: str) -> Principal:
    """The caller of a session access token, as accounts knows them now (at most a few seconds ago)."""
    claimed = auth_state(request).tokens.verify(token)
    cache = auth_state(request).sessions
    key = (claimed.session_id or "", claimed.user_id)
    answer = cache.get(key)
    if answer is None:
        answer = await _check_session(request, claimed)
        cache.put(key, answer)
    if isinstance(answer, DomainError):
        raise type(answer)(answer.message, code=answer.code, **answer.details)  # a fresh one per request
    if answer.status == "disabled":
        raise Problem(403, "account_disabled", "this account is disabled")
    return replace(claimed, identity=answer, scopes=scopes_of(answer))


async def _limit_account(request: Request, principal: Principal) -> Principal:
    state = auth_state(request)
    wait = await state.api_by_account.take(principal.user_id)
    if wait:
        raise rate_limited(wait, "requests for this account")
    return replace(principal, signer=state.user_tokens)


async def _check_session(request: Request, claimed: Principal) -> Identity | DomainError:
    """Accounts' answer for this session: the user's current identity, or why the token is done
    (`session_ended`, `account_disabled`). Anything else, such as accounts being unreachable, is
    raised and not remembered: the request fails closed."""
    try:
        reply = await accounts(request).CheckSession(
            pb.CheckSessionRequest(session_id=claimed.session_id or ""),
            metadata=auth_state(request).user_tokens.metadata(claimed.identity),
        )
    except grpc.aio.AioRpcError as exc:
        error = from_rpc_error(exc)
        if not isinstance(error, Unauthenticated | PermissionDenied):
            raise
        return error
    return identity_of(reply.user)


CurrentPrincipal = Annotated[Principal, Depends(current_identity)]


def insufficient_scope(scope: str) -> Problem:
    return Problem(403, "insufficient_scope", f"this API key lacks the {scope!r} scope", scope=scope)


def require_scope(scope: str) -> Any:
    """A dependency that refuses API keys without `scope` (sessions carry their user's scopes)."""

    async def dependency(principal: CurrentPrincipal) -> Principal:
        if scope not in principal.scopes:
            raise insufficient_scope(scope)
        return principal

    return dependency


require_write = require_scope("write")


async def require_session(principal: CurrentPrincipal) -> Principal:
    """For managing credentials: a signed-in session, not an API key (a leaked key can't mint more)."""
    if principal.method != "session":
        raise Problem(403, "session_required", "sign in with your password to manage API keys")
    return principal


async def require_verified(request: Request, principal: CurrentPrincipal) -> Principal:
    """For actions that spend or move money (submit work, recharge): a verified email and, for API
    keys, the "write" scope. A session token minted before verification is re-checked with accounts,
    so verifying takes effect at once, without waiting for the next refresh."""
    if "write" not in principal.scopes:
        raise insufficient_scope("write")
    if principal.identity.status == "unverified" and principal.method == "session":
        reply = await accounts(request).GetUser(pb.GetUserRequest(), metadata=principal.metadata())
        principal = replace(principal, identity=identity_of(reply.user))
    if principal.identity.status != "active":
        raise Problem(403, "email_not_verified", "verify your email address first")
    return principal


async def require_admin(request: Request, principal: CurrentPrincipal) -> Principal:
    """The admin role as it is now, and for API keys the scope the method needs: reading takes "read"
    (or "admin"), anything else takes "admin" (a key's "write" is for its owner's own things)."""
    if not principal.identity.is_admin:
        raise Problem(403, "admin_required", "this needs the admin role")
    if request.method in SAFE_METHODS:
        if not principal.scopes & {"read", "admin"}:
            raise insufficient_scope("read")
    elif "admin" not in principal.scopes:
        raise insufficient_scope("admin")
    return principal


VerifiedPrincipal = Annotated[Principal, Depends(require_verified)]
WriterPrincipal = Annotated[Principal, Depends(require_write)]
AdminPrincipal = Annotated[Principal, Depends(require_admin)]
SessionPrincipal = Annotated[Principal, Depends(require_session)]
