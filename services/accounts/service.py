"""The rules of accounts: registration, verification, sessions, password reset, API keys, roles.

Pure of transport: every method takes the caller's session and typed arguments, raises DomainErrors,
and only flushes; the edge (servicer, CLI) owns the transaction and sends mail after commit.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Generic, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from kit.cursors import decode_cursor, encode_cursor, page_limit, split_page
from kit.errors import (
    DomainError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unauthenticated,
)
from kit.identity import Identity
from services.accounts import repository as repo
from services.accounts.credentials import (
    Passwords,
    check_password_policy,
    digest,
    looks_like_api_key,
    new_api_key,
    new_token,
)
from services.accounts.mailer import Mail, MailKind
from services.accounts.settings import AccountsSettings

# What an API key may be limited to. "read": GET endpoints; "write": submit work, cancel, recharge;
# "admin": change things through the admin API (only an admin's key may have it, and it acts only
# while its owner is an admin). A key made without scopes gets DEFAULT_SCOPES: admin is never implied.
SCOPES = ("read", "write", "admin")
DEFAULT_SCOPES = ("read", "write")
ADMIN_SCOPE = "admin"
ROLES = ("user", "admin")
STATUSES = ("unverified", "active", "disabled")
DEFAULT_PAGE = 50
MAX_PAGE = 100
MAX_NAME_LENGTH = 100
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")

T = TypeVar("T")

VERIFY = "verify_email"
RESET = "reset_password"

# One answer for a wrong password and an unknown email, so login never reveals who has an account.
_BAD_CREDENTIALS = "the email or password is not correct"


def utcnow() -> datetime:
    return datetime.now(UTC)


def normalize_email(raw: str) -> str:
    email = raw.strip().lower()
    if len(email) > 254 or not _EMAIL.match(email):
        raise InvalidArgument("this is not a valid email address", code="invalid_email", field="email")
    return email


def normalize_locale(raw: str) -> str:
    """ "zh", "zh-CN", "zh_Hans" → "zh"; everything else (including empty) → "en"."""
    return "zh" if raw.strip().lower().replace("_", "-").split("-")[0] == "zh" else "en"


@dataclass(frozen=True)
class IssuedSession:
    user: repo.User
    token: str
    session_id: uuid.UUID
    expires_at: datetime

    def __repr__(self) -> str:
        return f"IssuedSession(user={self.user!r}, session_id={self.session_id})"


@dataclass(frozen=True)
class CommitThenRaise:
    """The state change (e.g. revoking a session family) must be committed, and the call still fail."""

    error: DomainError


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    next_cursor: str


def _after(cursor: str) -> tuple[datetime, uuid.UUID] | None:
    """The (created_at, id) a page starts after; an id that is not a UUID is as invalid as the cursor."""
    decoded = decode_cursor(cursor)
    if decoded is None:
        return None
    try:
        return decoded[0], uuid.UUID(decoded[1])
    except ValueError as exc:
        raise InvalidArgument("the cursor is not valid", code="invalid_cursor", field="cursor") from exc


def _limit(limit: int) -> int:
    return page_limit(limit, default=DEFAULT_PAGE, maximum=MAX_PAGE)


def parse_id(raw: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError as exc:
        raise InvalidArgument(f"{what} is not a valid id", code="invalid_id", field=what) from exc


async def _user_to_change(
    session: AsyncSession, caller: Identity, user_id: str, what: str, value: str, allowed: Collection[str]
) -> repo.User:
    """The user whose `what` an admin sets to `value`, locked: a known value, and never the admin's own."""
    if value not in allowed:
        raise InvalidArgument(f"unknown {what}", code=f"invalid_{what}", field=what)
    target = parse_id(user_id, "user_id")
    if str(target) == caller.user_id:
        raise FailedPrecondition(f"admins cannot change their own {what}", code="cannot_change_self")
    user = await repo.user_by_id(session, target, for_update=True)
    if user is None:
        raise NotFound("no such user", code="user_not_found")
    return user


class AccountsService:
    def __init__(
        self, settings: AccountsSettings, passwords: Passwords, clock: Callable[[], datetime] = utcnow
    ) -> None:
        self.settings = settings
        self.passwords = passwords
        self.clock = clock

    # -- registration and verification ------------------------------------------------------------
    async def register(
        self, session: AsyncSession, *, email: str, password: str, locale: str
    ) -> tuple[repo.User, Mail]:
        email = normalize_email(email)
        now = self.clock()
        user = await self._new_user(
            session, email, password, locale, role="user", status="unverified", now=now
        )
        if user is None:
            raise FailedPrecondition(
                "an account with this email already exists", code="email_taken", field="email"
            )
        return user, await self._email_token(session, user, VERIFY, now)

    async def _new_user(
        self,
        session: AsyncSession,
        email: str,
        password: str,
        locale: str,
        *,
        role: str,
        status: str,
        now: datetime,
    ) -> repo.User | None:
        """The new user (the password checked against the policy, then hashed), or None when the email
        is taken."""
        check_password_policy(password, email=email)
        return await repo.insert_user(
            session,
            email=email,
            password_hash=await self.passwords.hash(password),
            role=role,
            status=status,
            locale=normalize_locale(locale),
            now=now,
        )

    async def _email_token(self, session: AsyncSession, user: repo.User, purpose: str, now: datetime) -> Mail:
        token = new_token()
        await repo.insert_email_token(
            session,
            user_id=user.id,
            purpose=purpose,
            token_hash=digest(token),
            now=now,
            expires_at=now + timedelta(seconds=self.settings.email_token_ttl_seconds),
        )
        link = self.settings.verify_url(token) if purpose == VERIFY else self.settings.reset_url(token)
        kind: MailKind = "verify_email" if purpose == VERIFY else "reset_password"
        return Mail(to=user.email, kind=kind, locale=user.locale, link=link)

    async def _spend_email_token(
        self, session: AsyncSession, token: str, purpose: str, now: datetime
    ) -> repo.User:
        """The user of a valid, unused, unexpired token of this purpose; every failure is explicit."""
        found = await repo.email_token_by_hash(session, digest(token.strip())) if token.strip() else None
        if found is None or found.purpose != purpose:
            raise InvalidArgument("this link is not valid", code="invalid_token")
        if found.used_at is not None:
            raise InvalidArgument("this link was already used", code="token_used")
        if found.expires_at <= now:
            raise InvalidArgument("this link has expired; ask for a new one", code="token_expired")
        user = await repo.user_by_id(session, found.user_id, for_update=True)
        if user is None:  # cascade deletes make this unreachable; keep the answer uniform anyway
            raise InvalidArgument("this link is not valid", code="invalid_token")
        await repo.use_email_tokens(session, user.id, purpose, now)
        return user

    async def verify_email(self, session: AsyncSession, *, token: str) -> repo.User:
        now = self.clock()
        user = await self._spend_email_token(session, token, VERIFY, now)
        values: dict[str, object] = {"email_verified_at": user.email_verified_at or now}
        if user.status == "unverified":
            values["status"] = "active"
        return await repo.update_user(session, user.id, now, **values)

    async def _cooled_down(self, session: AsyncSession, user: repo.User, purpose: str, now: datetime) -> bool:
        latest = await repo.latest_email_token_at(session, user.id, purpose)
        cooldown = timedelta(seconds=self.settings.email_resend_cooldown_seconds)
        return latest is None or now - latest >= cooldown

    async def resend_verification(self, session: AsyncSession, *, email: str) -> Mail | None:
        """A new verification mail, or None (unknown, already verified, or within the cooldown).
        The caller answers the same in every case: no account enumeration."""
        now = self.clock()
        user = await repo.user_by_email(session, normalize_email(email), for_update=True)
        if (
            user is None
            or user.status != "unverified"
            or not await self._cooled_down(session, user, VERIFY, now)
        ):
            return None
        return await self._email_token(session, user, VERIFY, now)

    # -- sessions ---------------------------------------------------------------------------------
    async def login(
        self, session: AsyncSession, *, email: str, password: str, ip: str, user_agent: str
    ) -> IssuedSession:
        try:
            normalized = normalize_email(email)
        except InvalidArgument:
            normalized = ""
        user = await repo.user_by_email(session, normalized) if normalized else None
        # Unknown accounts verify a dummy hash: the same answer in the same time as a wrong password.
        matches = await self.passwords.verify(user.password_hash if user else None, password)
        if user is None or not matches:
            raise Unauthenticated(_BAD_CREDENTIALS, code="invalid_credentials")
        if user.status == "disabled":
            raise PermissionDenied("this account is disabled", code="account_disabled")
        now = self.clock()
        if self.passwords.needs_rehash(user.password_hash):
            user = await repo.update_user(
                session, user.id, now, password_hash=await self.passwords.hash(password)
            )
        return await self._issue(session, user, uuid.uuid4(), now, ip, user_agent)

    async def _issue(
        self,
        session: AsyncSession,
        user: repo.User,
        family_id: uuid.UUID,
        now: datetime,
        ip: str,
        user_agent: str,
    ) -> IssuedSession:
        token = new_token()
        record = await repo.insert_refresh_token(
            session,
            family_id=family_id,
            user_id=user.id,
            token_hash=digest(token),
            now=now,
            expires_at=now + timedelta(seconds=self.settings.refresh_ttl_seconds),
            ip=ip[:64],
            user_agent=user_agent[:512],
        )
        return IssuedSession(user, token, family_id, record.expires_at)

    async def refresh(
        self, session: AsyncSession, *, token: str, ip: str, user_agent: str
    ) -> IssuedSession | CommitThenRaise:
        """Rotate: the presented token is spent and a successor issued in the same family. Presenting a
        spent token again means it was stolen (or raced): the whole family is revoked."""
        now = self.clock()
        found = await repo.refresh_token_by_hash(session, digest(token)) if token else None
        if found is None or found.revoked_at is not None:
            raise Unauthenticated("this session is not valid; sign in again", code="invalid_refresh_token")
        if found.rotated_at is not None:
            await repo.revoke_families(session, now, family_id=found.family_id)
            return CommitThenRaise(
                Unauthenticated(
                    "this refresh token was already used; the session is revoked, sign in again",
                    code="refresh_token_reused",
                )
            )
        if found.expires_at <= now:
            raise Unauthenticated("this session has expired; sign in again", code="refresh_token_expired")
        user = await repo.user_by_id(session, found.user_id)
        if user is None or user.status == "disabled":
            await repo.revoke_families(session, now, family_id=found.family_id)
            return CommitThenRaise(PermissionDenied("this account is disabled", code="account_disabled"))
        await repo.mark_rotated(session, found.id, now)
        return await self._issue(session, user, found.family_id, now, ip, user_agent)

    async def logout(self, session: AsyncSession, *, token: str, all_sessions: bool) -> None:
        """Idempotent: an unknown or already revoked token is simply done."""
        found = await repo.refresh_token_by_hash(session, digest(token)) if token else None
        if found is None:
            return
        now = self.clock()
        if all_sessions:
            await repo.revoke_families(session, now, user_id=found.user_id)
        else:
            await repo.revoke_families(session, now, family_id=found.family_id)

    # -- password reset ---------------------------------------------------------------------------
    async def request_password_reset(self, session: AsyncSession, *, email: str) -> Mail | None:
        """A reset mail, or None; the caller always answers the same (no account enumeration)."""
        try:
            normalized = normalize_email(email)
        except InvalidArgument:
            return None
        now = self.clock()
        user = await repo.user_by_email(session, normalized, for_update=True)
        if (
            user is None
            or user.status == "disabled"
            or not await self._cooled_down(session, user, RESET, now)
        ):
            return None
        return await self._email_token(session, user, RESET, now)

    async def confirm_password_reset(self, session: AsyncSession, *, token: str, new_password: str) -> None:
        now = self.clock()
        user = await self._spend_email_token(session, token, RESET, now)
        check_password_policy(new_password, email=user.email)
        values: dict[str, object] = {"password_hash": await self.passwords.hash(new_password)}
        if user.status == "unverified":  # the reset link proved the address is theirs
            values.update(status="active", email_verified_at=now)
        await repo.update_user(session, user.id, now, **values)
        await repo.revoke_families(session, now, user_id=user.id)

    # -- users ------------------------------------------------------------------------------------
    async def get_user(self, session: AsyncSession, *, caller: Identity, user_id: str) -> repo.User:
        target = parse_id(user_id or caller.user_id, "user_id")
        if str(target) != caller.user_id and not caller.is_admin:
            raise PermissionDenied("only admins may read other accounts", code="admin_required")
        user = await repo.user_by_id(session, target)
        if user is None:
            raise NotFound("no such user", code="user_not_found")
        return user

    async def list_users(
        self,
        session: AsyncSession,
        *,
        cursor: str,
        limit: int,
        email_query: str,
        status: str | None,
        role: str | None,
    ) -> Page[repo.User]:
        size = _limit(limit)
        rows = await repo.list_users(
            session,
            after=_after(cursor),
            limit=size + 1,
            email_query=email_query.strip(),
            status=status,
            role=role,
        )
        return _page(rows, size, lambda u: (u.created_at, u.id))

    async def set_user_status(
        self, session: AsyncSession, *, caller: Identity, user_id: str, status: str
    ) -> repo.User:
        user = await _user_to_change(session, caller, user_id, "status", status, STATUSES)
        now = self.clock()
        values: dict[str, object] = {"status": status}
        if status == "active" and user.email_verified_at is None:
            values["email_verified_at"] = now  # an admin vouches for the address
        if status == "disabled":
            await repo.revoke_families(session, now, user_id=user.id)
        return await repo.update_user(session, user.id, now, **values)

    async def set_user_role(
        self, session: AsyncSession, *, caller: Identity, user_id: str, role: str
    ) -> repo.User:
        user = await _user_to_change(session, caller, user_id, "role", role, ROLES)
        return await repo.update_user(session, user.id, self.clock(), role=role)

    async def ensure_admin(
        self, session: AsyncSession, *, email: str, password: str, locale: str
    ) -> tuple[repo.User, bool]:
        """Create an active admin, or promote and activate the existing user (password untouched)."""
        email = normalize_email(email)
        now = self.clock()
        existing = await repo.user_by_email(session, email, for_update=True)
        if existing is None:
            created = await self._new_user(
                session, email, password, locale, role="admin", status="active", now=now
            )
            if created is not None:
                return created, True
            existing = await repo.user_by_email(session, email, for_update=True)
            assert existing is not None  # lost a race to another creator: promote what it made
        if existing.role == "admin" and existing.status == "active":
            return existing, False
        promoted = await repo.update_user(
            session,
            existing.id,
            now,
            role="admin",
            status="active",
            email_verified_at=existing.email_verified_at or now,
        )
        return promoted, False

    # -- API keys ---------------------------------------------------------------------------------
    async def create_api_key(
        self,
        session: AsyncSession,
        *,
        caller: Identity,
        name: str,
        scopes: Sequence[str],
        expires_at: datetime | None,
    ) -> tuple[repo.ApiKey, str]:
        name = name.strip()
        if not name or len(name) > MAX_NAME_LENGTH:
            raise InvalidArgument(
                f"a key needs a name of 1 to {MAX_NAME_LENGTH} characters", code="invalid_name", field="name"
            )
        unknown = sorted(set(scopes) - set(SCOPES))
        if unknown:
            raise InvalidArgument(
                f"unknown scopes: {', '.join(unknown)}", code="invalid_scope", allowed=",".join(SCOPES)
            )
        now = self.clock()
        if expires_at is not None and expires_at <= now:
            raise InvalidArgument("the expiry must be in the future", code="invalid_expiry")
        user_id = parse_id(caller.user_id, "user_id")
        user = await repo.user_by_id(session, user_id)
        if user is None:
            raise NotFound("no such user", code="user_not_found")
        if ADMIN_SCOPE in scopes and user.role != "admin":  # the stored role, not the claimed one
            raise PermissionDenied(
                "only an admin may give a key the 'admin' scope", code="admin_scope_forbidden", field="scopes"
            )
        plaintext, prefix = new_api_key(live=self.settings.environment == "production")
        key = await repo.insert_api_key(
            session,
            user_id=user_id,
            name=name,
            prefix=prefix,
            key_hash=digest(plaintext),
            scopes=sorted(set(scopes)) or list(DEFAULT_SCOPES),
            now=now,
            expires_at=expires_at,
        )
        return key, plaintext

    async def list_api_keys(
        self, session: AsyncSession, *, caller: Identity, cursor: str, limit: int, include_revoked: bool
    ) -> Page[repo.ApiKey]:
        size = _limit(limit)
        rows = await repo.list_api_keys(
            session,
            parse_id(caller.user_id, "user_id"),
            after=_after(cursor),
            limit=size + 1,
            include_revoked=include_revoked,
            now=self.clock(),
        )
        return _page(rows, size, lambda k: (k.created_at, k.id))

    async def revoke_api_key(self, session: AsyncSession, *, caller: Identity, key_id: str) -> repo.ApiKey:
        key = await repo.api_key_of_user(
            session, parse_id(key_id, "api_key_id"), parse_id(caller.user_id, "user_id"), for_update=True
        )
        if key is None:  # someone else's key is as absent as a missing one
            raise NotFound("no such API key", code="api_key_not_found")
        if key.revoked_at is not None:
            return key
        return await repo.update_api_key(session, key.id, revoked_at=self.clock())

    async def authenticate_api_key(self, session: AsyncSession, *, key: str) -> tuple[repo.User, repo.ApiKey]:
        found = await repo.api_key_by_hash(session, digest(key)) if looks_like_api_key(key) else None
        now = self.clock()
        if (
            found is None
            or found.revoked_at is not None
            or (found.expires_at is not None and found.expires_at <= now)
        ):
            raise Unauthenticated("this API key is not valid", code="invalid_api_key")
        user = await repo.user_by_id(session, found.user_id)
        if user is None:
            raise Unauthenticated("this API key is not valid", code="invalid_api_key")
        if user.status == "disabled":
            raise PermissionDenied("this account is disabled", code="account_disabled")
        await repo.touch_api_key(session, found.id, now)
        if user.role != "admin" and ADMIN_SCOPE in found.scopes:  # its owner was demoted
            found = replace(found, scopes=tuple(s for s in found.scopes if s != ADMIN_SCOPE))
        return user, found

    # -- session checks ---------------------------------------------------------------------------
    async def check_session(self, session: AsyncSession, *, caller: Identity, session_id: str) -> repo.User:
        """The caller as they are now, if the session their access token names is still live."""
        ended = Unauthenticated("this session has ended; sign in again", code="session_ended")
        try:
            family_id, user_id = uuid.UUID(session_id), uuid.UUID(caller.user_id)
        except ValueError:
            raise ended from None
        user = await repo.user_by_id(session, user_id)
        if user is None:
            raise ended
        if user.status == "disabled":
            raise PermissionDenied("this account is disabled", code="account_disabled")
        if not await repo.session_is_live(session, family_id, user_id, self.clock()):
            raise ended
        return user


def _page(rows: list[T], size: int, key: Callable[[T], tuple[datetime, uuid.UUID]]) -> Page[T]:
    return Page(*split_page(rows, size, lambda row: encode_cursor(*key(row))))
