"""The rules of accounts against the real migrated database, with a controllable clock."""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from kit.cursors import encode_cursor
from kit.db import Database
from kit.errors import DomainError, InvalidArgument, PermissionDenied, Unauthenticated
from kit.identity import Identity
from services.accounts.credentials import Passwords, check_password_policy, digest
from services.accounts.models import api_keys, email_tokens, refresh_tokens, users
from services.accounts.service import AccountsService, CommitThenRaise, IssuedSession, normalize_locale
from tests.accounts.stack import PASSWORD, AccountsStack, accounts_settings, new_email, token_in
from tests.conftest import MigratedDatabase


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
async def db(migrated_database: MigratedDatabase) -> AsyncIterator[Database]:
    database = Database(await migrated_database("accounts"), application_name="atelier-accounts-tests")
    yield database
    await database.dispose()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def service(db: Database, clock: Clock) -> AccountsService:
    settings = accounts_settings(str(db.url), 0)
    passwords = Passwords(time_cost=1, memory_kib=8 * 1024, parallelism=1)
    return AccountsService(settings, passwords, clock=clock)


def token_of(link: str) -> str:
    return link.rstrip("/").rsplit("/", 1)[-1]


async def test_emails_are_normalized_and_unique_case_insensitively(
    db: Database, service: AccountsService
) -> None:
    email = new_email()
    async with db.transaction() as session:
        user, _ = await service.register(
            session, email=f"  {email.upper()} ", password=PASSWORD, locale="zh-CN"
        )
    assert user.email == email
    assert user.locale == "zh"
    assert user.password_hash.startswith("$argon2id$")
    with pytest.raises(DomainError) as taken:
        async with db.transaction() as session:
            await service.register(session, email=email.title(), password=PASSWORD, locale="en")
    assert taken.value.code == "email_taken"
    for bad in ("", "no-at-sign", "two@@example.com", "a@b", "x" * 250 + "@example.com"):
        with pytest.raises(InvalidArgument):
            async with db.transaction() as session:
                await service.register(session, email=bad, password=PASSWORD, locale="en")


def test_password_policy() -> None:
    check_password_policy("a long and unusual passphrase")
    for weak in ("short", "1234567890", "aaaaaaaaaaaaaa", "x" * 300, "PASSWORD123"):
        with pytest.raises(InvalidArgument) as refused:
            check_password_policy(weak)
        assert refused.value.code == "weak_password"
    with pytest.raises(InvalidArgument):
        check_password_policy("grace.hopper-2026", email="grace.hopper@example.com")


def test_locales() -> None:
    assert [normalize_locale(x) for x in ("zh", "zh-CN", "zh_Hans", "ZH-tw", "en", "fr", "")] == [
        "zh",
        "zh",
        "zh",
        "zh",
        "en",
        "en",
        "en",
    ]


async def test_tokens_are_stored_hashed_expire_and_work_once(
    db: Database, service: AccountsService, clock: Clock
) -> None:
    async with db.transaction() as session:
        user, mail = await service.register(session, email=new_email(), password=PASSWORD, locale="en")
    token = token_of(mail.link)
    async with db.session() as session:
        stored = (await session.execute(select(email_tokens).where(email_tokens.c.user_id == user.id))).one()
    assert stored.token_hash == digest(token)
    assert token.encode() not in stored.token_hash
    assert stored.expires_at - stored.created_at == timedelta(hours=24)

    clock.advance(hours=24, seconds=1)
    with pytest.raises(InvalidArgument) as expired:
        async with db.transaction() as session:
            await service.verify_email(session, token=token)
    assert expired.value.code == "token_expired"

    clock.advance(minutes=2)  # past the resend cooldown
    async with db.transaction() as session:
        fresh = await service.resend_verification(session, email=user.email)
    assert fresh is not None
    async with db.transaction() as session:
        verified = await service.verify_email(session, token=token_of(fresh.link))
    assert verified.status == "active"
    with pytest.raises(InvalidArgument) as reused:
        async with db.transaction() as session:
            await service.verify_email(session, token=token_of(fresh.link))
    assert reused.value.code == "token_used"
    with pytest.raises(InvalidArgument) as forged:
        async with db.transaction() as session:
            await service.verify_email(session, token=token_of(fresh.link)[:-1] + "x")
    assert forged.value.code == "invalid_token"

    async with db.transaction() as session:  # verified accounts get no more verification mail
        assert await service.resend_verification(session, email=user.email) is None


async def test_a_reset_token_is_not_a_verification_token(db: Database, service: AccountsService) -> None:
    async with db.transaction() as session:
        user, _ = await service.register(session, email=new_email(), password=PASSWORD, locale="en")
    async with db.transaction() as session:
        reset = await service.request_password_reset(session, email=user.email)
    assert reset is not None
    with pytest.raises(InvalidArgument) as wrong_purpose:
        async with db.transaction() as session:
            await service.verify_email(session, token=token_of(reset.link))
    assert wrong_purpose.value.code == "invalid_token"
    async with db.transaction() as session:  # within the cooldown: silently nothing
        assert await service.request_password_reset(session, email=user.email) is None
    async with db.transaction() as session:
        await service.confirm_password_reset(
            session, token=token_of(reset.link), new_password="a new passphrase"
        )
    async with db.session() as session:
        after = (await session.execute(select(users.c.status).where(users.c.id == user.id))).scalar_one()
    assert after == "active"  # the reset link proved the address


async def test_unknown_email_costs_the_same_time_as_a_wrong_password(db: Database) -> None:
    """Timing must not reveal who has an account: an unknown email verifies a dummy hash."""
    settings = accounts_settings(str(db.url), 0)
    realistic = AccountsService(settings, Passwords(time_cost=2, memory_kib=32 * 1024, parallelism=1))
    email = new_email()
    async with db.transaction() as session:
        await realistic.register(session, email=email, password=PASSWORD, locale="en")

    async def attempt(address: str) -> float:
        started = time.perf_counter()
        with pytest.raises(Unauthenticated) as refused:
            async with db.transaction() as session:
                await realistic.login(
                    session, email=address, password="wrong password!", ip="", user_agent=""
                )
        assert refused.value.code == "invalid_credentials"
        return time.perf_counter() - started

    await attempt(new_email())  # warm the dummy hash
    known, unknown = [], []
    for _ in range(7):
        known.append(await attempt(email))
        unknown.append(await attempt(new_email("ghost")))
    ratio = statistics.median(unknown) / statistics.median(known)
    assert 0.5 < ratio < 2.0, f"unknown/known login time ratio {ratio:.2f}"


async def test_refresh_reuse_revokes_the_family_and_commits(db: Database, service: AccountsService) -> None:
    async with db.transaction() as session:
        user, _ = await service.register(session, email=new_email(), password=PASSWORD, locale="en")
    async with db.transaction() as session:
        first = await service.login(
            session, email=user.email, password=PASSWORD, ip="198.51.100.1", user_agent="t"
        )
    async with db.transaction() as session:
        second = await service.refresh(session, token=first.token, ip="", user_agent="")
    assert isinstance(second, IssuedSession)
    async with db.transaction() as session:
        reuse = await service.refresh(session, token=first.token, ip="", user_agent="")
    assert isinstance(reuse, CommitThenRaise)
    assert reuse.error.code == "refresh_token_reused"
    async with db.session() as session:
        live = (
            await session.execute(
                select(refresh_tokens.c.id).where(
                    refresh_tokens.c.family_id == first.session_id, refresh_tokens.c.revoked_at.is_(None)
                )
            )
        ).all()
    assert live == []
    async with db.session() as session:
        stored = (await session.execute(select(refresh_tokens.c.token_hash, refresh_tokens.c.ip))).all()
    assert all(row.token_hash != first.token.encode() for row in stored)


async def test_refresh_expires(db: Database, service: AccountsService, clock: Clock) -> None:
    async with db.transaction() as session:
        user, _ = await service.register(session, email=new_email(), password=PASSWORD, locale="en")
    async with db.transaction() as session:
        issued = await service.login(session, email=user.email, password=PASSWORD, ip="", user_agent="")
    clock.advance(days=31)
    with pytest.raises(Unauthenticated) as expired:
        async with db.transaction() as session:
            await service.refresh(session, token=issued.token, ip="", user_agent="")
    assert expired.value.code == "refresh_token_expired"


async def test_disabled_accounts_are_locked_out(db: Database, service: AccountsService) -> None:
    async with db.transaction() as session:
        admin, _ = await service.ensure_admin(
            session, email=new_email("admin"), password=PASSWORD, locale="en"
        )
        user, _ = await service.register(session, email=new_email(), password=PASSWORD, locale="en")
    async with db.transaction() as session:
        issued = await service.login(session, email=user.email, password=PASSWORD, ip="", user_agent="")
        key, plaintext = await service.create_api_key(
            session, caller=Identity(str(user.id), "user", "unverified"), name="k", scopes=[], expires_at=None
        )
    assert key.scopes == ("read", "write")
    admin_identity = Identity(str(admin.id), "admin", "active")
    async with db.transaction() as session:
        await service.set_user_status(session, caller=admin_identity, user_id=str(user.id), status="disabled")
    with pytest.raises(Unauthenticated):  # disabling revoked the sessions
        async with db.transaction() as session:
            await service.refresh(session, token=issued.token, ip="", user_agent="")
    with pytest.raises(PermissionDenied):
        async with db.transaction() as session:
            await service.login(session, email=user.email, password=PASSWORD, ip="", user_agent="")
    with pytest.raises(PermissionDenied):
        async with db.transaction() as session:
            await service.authenticate_api_key(session, key=plaintext)
    with pytest.raises(DomainError) as self_change:
        async with db.transaction() as session:
            await service.set_user_role(session, caller=admin_identity, user_id=str(admin.id), role="user")
    assert self_change.value.code == "cannot_change_self"


async def test_api_keys_hash_expiry_and_scopes(db: Database, service: AccountsService, clock: Clock) -> None:
    async with db.transaction() as session:
        user, _ = await service.register(session, email=new_email(), password=PASSWORD, locale="en")
    me = Identity(str(user.id), "user", "unverified")
    with pytest.raises(InvalidArgument):
        async with db.transaction() as session:
            await service.create_api_key(session, caller=me, name="x", scopes=["root"], expires_at=None)
    with pytest.raises(InvalidArgument):
        async with db.transaction() as session:
            await service.create_api_key(session, caller=me, name="x", scopes=[], expires_at=clock.now)
    async with db.transaction() as session:
        key, plaintext = await service.create_api_key(
            session, caller=me, name="short-lived", scopes=["read"], expires_at=clock.now + timedelta(hours=1)
        )
    async with db.session() as session:
        stored = (await session.execute(select(api_keys).where(api_keys.c.id == key.id))).one()
    assert stored.key_hash == digest(plaintext)
    assert plaintext.startswith(stored.prefix)
    assert plaintext not in str(stored._mapping)

    async with db.transaction() as session:
        found_user, found = await service.authenticate_api_key(session, key=plaintext)
    assert (found_user.id, found.id) == (user.id, key.id)
    clock.advance(hours=2)
    with pytest.raises(Unauthenticated):
        async with db.transaction() as session:
            await service.authenticate_api_key(session, key=plaintext)


async def test_pagination_of_api_keys(db: Database, service: AccountsService) -> None:
    async with db.transaction() as session:
        user, _ = await service.register(session, email=new_email(), password=PASSWORD, locale="en")
    me = Identity(str(user.id), "user", "active")
    async with db.transaction() as session:
        for n in range(5):
            await service.create_api_key(session, caller=me, name=f"k{n}", scopes=[], expires_at=None)
    names: list[str] = []
    cursor = ""
    while True:
        async with db.session() as session:
            page = await service.list_api_keys(
                session, caller=me, cursor=cursor, limit=2, include_revoked=False
            )
        names += [k.name for k in page.items]
        if not page.next_cursor:
            break
        cursor = page.next_cursor
    assert sorted(names) == [f"k{n}" for n in range(5)]
    assert len(names) == 5
    with pytest.raises(InvalidArgument):
        async with db.session() as session:
            await service.list_api_keys(session, caller=me, cursor="garbage!", limit=2, include_revoked=False)
    # A well-formed cursor whose id is not an API key id is refused the same way.
    with pytest.raises(InvalidArgument) as bad:
        async with db.session() as session:
            await service.list_api_keys(
                session,
                caller=me,
                cursor=encode_cursor(datetime.now(UTC), "not-a-uuid"),
                limit=2,
                include_revoked=False,
            )
    assert bad.value.code == "invalid_cursor"


async def test_ensure_admin_creates_then_promotes_idempotently(
    db: Database, service: AccountsService
) -> None:
    email = new_email("boss")
    async with db.transaction() as session:
        first, created = await service.ensure_admin(session, email=email, password=PASSWORD, locale="en")
    assert created
    assert (first.role, first.status) == ("admin", "active")
    async with db.transaction() as session:
        again, created_again = await service.ensure_admin(
            session, email=email.upper(), password="", locale="en"
        )
    assert not created_again
    assert again.id == first.id

    existing = new_email()
    async with db.transaction() as session:
        user, _ = await service.register(session, email=existing, password=PASSWORD, locale="en")
    async with db.transaction() as session:
        promoted, made = await service.ensure_admin(session, email=existing, password="", locale="en")
    assert not made
    assert (promoted.id, promoted.role, promoted.status) == (user.id, "admin", "active")
    assert promoted.password_hash == user.password_hash  # the password is left alone


async def test_verification_mail_via_grpc_reaches_smtp(accounts_stack: AccountsStack) -> None:
    from atelier.accounts.v1 import accounts_pb2 as pb

    email = new_email()
    await accounts_stack.stub.Register(pb.RegisterRequest(email=email, password=PASSWORD, locale="en"))
    message = await accounts_stack.inbox.wait_for(email)
    reply = await accounts_stack.stub.VerifyEmail(pb.VerifyEmailRequest(token=token_in(message)))
    assert reply.user.status == pb.USER_STATUS_ACTIVE
    assert uuid.UUID(reply.user.id)


async def test_concurrent_registrations_of_one_email_make_one_account(
    db: Database, service: AccountsService
) -> None:
    email = new_email("race")

    async def attempt(variant: str) -> str:
        try:
            async with db.transaction() as session:
                await service.register(session, email=variant, password=PASSWORD, locale="en")
            return "created"
        except DomainError as exc:
            return exc.code

    outcomes = await asyncio.gather(*(attempt(v) for v in (email, email.upper(), f" {email}", email.title())))
    assert sorted(outcomes) == ["created", "email_taken", "email_taken", "email_taken"]


async def test_concurrent_refreshes_of_one_token_rotate_once(db: Database, service: AccountsService) -> None:
    async with db.transaction() as session:
        user, _ = await service.register(session, email=new_email(), password=PASSWORD, locale="en")
    async with db.transaction() as session:
        issued = await service.login(session, email=user.email, password=PASSWORD, ip="", user_agent="")

    async def attempt() -> IssuedSession | CommitThenRaise:
        async with db.transaction() as session:
            return await service.refresh(session, token=issued.token, ip="", user_agent="")

    outcomes = await asyncio.gather(*(attempt() for _ in range(4)), return_exceptions=True)
    winners = [o for o in outcomes if isinstance(o, IssuedSession)]
    assert len(winners) == 1  # the row lock serializes them: one rotation
    # The rest present a spent token: the first of them revokes the family, later ones find it revoked.
    assert all(isinstance(o, CommitThenRaise | Unauthenticated) for o in outcomes if o not in winners)
    with pytest.raises(Unauthenticated):
        async with db.transaction() as session:
            await service.refresh(session, token=winners[0].token, ip="", user_agent="")
