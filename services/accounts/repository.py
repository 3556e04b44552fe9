"""Every query of the accounts service. Functions take the caller's session; none commits."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Row, Table, func, insert, literal, or_, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.accounts.models import api_keys, email_tokens, refresh_tokens, users

_TOUCH_EVERY = timedelta(minutes=1)


@dataclass(frozen=True)
class User:
    id: uuid.UUID
    email: str
    password_hash: str
    role: str
    status: str
    locale: str
    created_at: datetime
    updated_at: datetime
    email_verified_at: datetime | None

    def __repr__(self) -> str:  # keep the hash out of logs and tracebacks
        return f"User(id={self.id}, role={self.role!r}, status={self.status!r})"


@dataclass(frozen=True)
class EmailToken:
    id: uuid.UUID
    user_id: uuid.UUID
    purpose: str
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None


@dataclass(frozen=True)
class RefreshToken:
    id: uuid.UUID
    family_id: uuid.UUID
    user_id: uuid.UUID
    created_at: datetime
    expires_at: datetime
    rotated_at: datetime | None
    revoked_at: datetime | None


@dataclass(frozen=True)
class ApiKey:
    id: uuid.UUID
    user_id: uuid.UUID
    name: str
    prefix: str
    scopes: tuple[str, ...]
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime | None
    revoked_at: datetime | None


def _user(row: Row[Any]) -> User:
    return User(**{k: row._mapping[k] for k in User.__dataclass_fields__})


def _email_token(row: Row[Any]) -> EmailToken:
    return EmailToken(**{k: row._mapping[k] for k in EmailToken.__dataclass_fields__})


def _refresh(row: Row[Any]) -> RefreshToken:
    return RefreshToken(**{k: row._mapping[k] for k in RefreshToken.__dataclass_fields__})


def _api_key(row: Row[Any]) -> ApiKey:
    values = {k: row._mapping[k] for k in ApiKey.__dataclass_fields__}
    values["scopes"] = tuple(values["scopes"])
    return ApiKey(**values)


R = TypeVar("R")


async def _first(
    session: AsyncSession,
    table: Table,
    record: Callable[[Row[Any]], R],
    *where: ColumnElement[bool],
    for_update: bool = False,
) -> R | None:
    """The first row of `table` matching `where` as a record, or None; locked when `for_update`."""
    query = select(table).where(*where)
    if for_update:
        query = query.with_for_update()
    row = (await session.execute(query)).first()
    return record(row) if row is not None else None


# -- users --------------------------------------------------------------------------------------------
async def insert_user(
    session: AsyncSession,
    *,
    email: str,
    password_hash: str,
    role: str,
    status: str,
    locale: str,
    now: datetime,
) -> User | None:
    """The new user, or None when the email is taken (the unique index decides, race-free)."""
    row = (
        await session.execute(
            pg_insert(users)
            .values(
                id=uuid.uuid4(),
                email=email,
                password_hash=password_hash,
                role=role,
                status=status,
                locale=locale,
                created_at=now,
                updated_at=now,
                email_verified_at=now if status == "active" else None,
            )
            .on_conflict_do_nothing(index_elements=[users.c.email])
            .returning(*users.c)
        )
    ).first()
    return _user(row) if row is not None else None


async def user_by_email(session: AsyncSession, email: str, *, for_update: bool = False) -> User | None:
    return await _first(session, users, _user, users.c.email == email, for_update=for_update)


async def user_by_id(session: AsyncSession, user_id: uuid.UUID, *, for_update: bool = False) -> User | None:
    return await _first(session, users, _user, users.c.id == user_id, for_update=for_update)


async def update_user(session: AsyncSession, user_id: uuid.UUID, now: datetime, **values: Any) -> User:
    row = (
        await session.execute(
            update(users).where(users.c.id == user_id).values(updated_at=now, **values).returning(*users.c)
        )
    ).one()
    return _user(row)


async def list_users(
    session: AsyncSession,
    *,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
    email_query: str,
    status: str | None,
    role: str | None,
) -> list[User]:
    query = select(users)
    if after is not None:
        query = query.where(
            tuple_(users.c.created_at, users.c.id) > tuple_(literal(after[0]), literal(after[1]))
        )
    if email_query:
        escaped = email_query.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        query = query.where(users.c.email.like(f"%{escaped}%", escape="\\"))
    if status is not None:
        query = query.where(users.c.status == status)
    if role is not None:
        query = query.where(users.c.role == role)
    rows = await session.execute(query.order_by(users.c.created_at, users.c.id).limit(limit))
    return [_user(row) for row in rows]


# -- email tokens -------------------------------------------------------------------------------------
async def insert_email_token(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    purpose: str,
    token_hash: bytes,
    now: datetime,
    expires_at: datetime,
) -> None:
    await session.execute(
        insert(email_tokens).values(
            id=uuid.uuid4(),
            user_id=user_id,
            purpose=purpose,
            token_hash=token_hash,
            created_at=now,
            expires_at=expires_at,
        )
    )


async def email_token_by_hash(session: AsyncSession, token_hash: bytes) -> EmailToken | None:
    return await _first(
        session, email_tokens, _email_token, email_tokens.c.token_hash == token_hash, for_update=True
    )


async def latest_email_token_at(session: AsyncSession, user_id: uuid.UUID, purpose: str) -> datetime | None:
    latest: datetime | None = (
        await session.execute(
            select(func.max(email_tokens.c.created_at)).where(
                email_tokens.c.user_id == user_id, email_tokens.c.purpose == purpose
            )
        )
    ).scalar_one()
    return latest


async def use_email_tokens(session: AsyncSession, user_id: uuid.UUID, purpose: str, now: datetime) -> None:
    """Mark every outstanding token of this purpose used: one success spends them all."""
    await session.execute(
        update(email_tokens)
        .where(
            email_tokens.c.user_id == user_id,
            email_tokens.c.purpose == purpose,
            email_tokens.c.used_at.is_(None),
        )
        .values(used_at=now)
    )


# -- refresh tokens -----------------------------------------------------------------------------------
async def insert_refresh_token(
    session: AsyncSession,
    *,
    family_id: uuid.UUID,
    user_id: uuid.UUID,
    token_hash: bytes,
    now: datetime,
    expires_at: datetime,
    ip: str,
    user_agent: str,
) -> RefreshToken:
    row = (
        await session.execute(
            insert(refresh_tokens)
            .values(
                id=uuid.uuid4(),
                family_id=family_id,
                user_id=user_id,
                token_hash=token_hash,
                created_at=now,
                expires_at=expires_at,
                ip=ip,
                user_agent=user_agent,
            )
            .returning(*refresh_tokens.c)
        )
    ).one()
    return _refresh(row)


async def refresh_token_by_hash(session: AsyncSession, token_hash: bytes) -> RefreshToken | None:
    return await _first(
        session, refresh_tokens, _refresh, refresh_tokens.c.token_hash == token_hash, for_update=True
    )


async def mark_rotated(session: AsyncSession, token_id: uuid.UUID, now: datetime) -> None:
    await session.execute(
        update(refresh_tokens).where(refresh_tokens.c.id == token_id).values(rotated_at=now)
    )


async def revoke_families(
    session: AsyncSession,
    now: datetime,
    *,
    family_id: uuid.UUID | None = None,
    user_id: uuid.UUID | None = None,
) -> int:
    """Revoke one session (family) or every session of a user. Returns the rows touched."""
    conditions: list[ColumnElement[bool]] = [refresh_tokens.c.revoked_at.is_(None)]
    if family_id is not None:
        conditions.append(refresh_tokens.c.family_id == family_id)
    if user_id is not None:
        conditions.append(refresh_tokens.c.user_id == user_id)
    result = await session.execute(update(refresh_tokens).where(*conditions).values(revoked_at=now))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def session_is_live(
    session: AsyncSession, family_id: uuid.UUID, user_id: uuid.UUID, now: datetime
) -> bool:
    """Whether this user's session still has a refresh token that can be used: not revoked (sign-out,
    reuse, password reset, disable), not yet exchanged, not expired."""
    live = select(refresh_tokens.c.id).where(
        refresh_tokens.c.family_id == family_id,
        refresh_tokens.c.user_id == user_id,
        refresh_tokens.c.revoked_at.is_(None),
        refresh_tokens.c.rotated_at.is_(None),
        refresh_tokens.c.expires_at > now,
    )
    return bool((await session.execute(select(live.exists()))).scalar())


# -- API keys -----------------------------------------------------------------------------------------
async def insert_api_key(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    name: str,
    prefix: str,
    key_hash: bytes,
    scopes: Sequence[str],
    now: datetime,
    expires_at: datetime | None,
) -> ApiKey:
    row = (
        await session.execute(
            insert(api_keys)
            .values(
                id=uuid.uuid4(),
                user_id=user_id,
                name=name,
                prefix=prefix,
                key_hash=key_hash,
                scopes=list(scopes),
                created_at=now,
                expires_at=expires_at,
            )
            .returning(*api_keys.c)
        )
    ).one()
    return _api_key(row)


async def api_key_by_hash(session: AsyncSession, key_hash: bytes) -> ApiKey | None:
    return await _first(session, api_keys, _api_key, api_keys.c.key_hash == key_hash)


async def api_key_of_user(
    session: AsyncSession, key_id: uuid.UUID, user_id: uuid.UUID, *, for_update: bool = False
) -> ApiKey | None:
    mine = (api_keys.c.id == key_id, api_keys.c.user_id == user_id)
    return await _first(session, api_keys, _api_key, *mine, for_update=for_update)


async def list_api_keys(
    session: AsyncSession,
    user_id: uuid.UUID,
    *,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
    include_revoked: bool,
    now: datetime,
) -> list[ApiKey]:
    query = select(api_keys).where(api_keys.c.user_id == user_id)
    if after is not None:
        query = query.where(
            tuple_(api_keys.c.created_at, api_keys.c.id) > tuple_(literal(after[0]), literal(after[1]))
        )
    if not include_revoked:
        query = query.where(
            api_keys.c.revoked_at.is_(None),
            or_(api_keys.c.expires_at.is_(None), api_keys.c.expires_at > now),
        )
    rows = await session.execute(query.order_by(api_keys.c.created_at, api_keys.c.id).limit(limit))
    return [_api_key(row) for row in rows]


async def update_api_key(session: AsyncSession, key_id: uuid.UUID, **values: Any) -> ApiKey:
    row = (
        await session.execute(
            update(api_keys).where(api_keys.c.id == key_id).values(**values).returning(*api_keys.c)
        )
    ).one()
    return _api_key(row)


async def touch_api_key(session: AsyncSession, key_id: uuid.UUID, now: datetime) -> None:
    """Record use, at most once a minute per key: a busy key must not turn every call into a write."""
    await session.execute(
        update(api_keys)
        .where(
            api_keys.c.id == key_id,
            or_(api_keys.c.last_used_at.is_(None), api_keys.c.last_used_at < now - _TOUCH_EVERY),
        )
        .values(last_used_at=now)
    )
