"""The accounts service for real: its migrated database, its gRPC server in-process, a real SMTP server
(aiosmtpd) receiving its mail, and the gateway app in front of it through httpx.ASGITransport.

A pytest plugin (`pytest_plugins` in tests/conftest.py): its fixtures are registered once, for the
accounts suite and every gateway suite that needs the real accounts service behind the app."""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from fastapi import FastAPI

from atelier.accounts.v1 import accounts_pb2, accounts_pb2_grpc
from devkit.embedded import free_port
from gateway.auth import AdminPrincipal, VerifiedPrincipal
from kit.db import Database
from kit.grpc_server import GrpcServer
from services.accounts.__main__ import build_mail_queue, build_service
from services.accounts.servicer import AccountsServicer
from services.accounts.settings import AccountsSettings
from tests import identities
from tests.conftest import MigratedDatabase
from tests.gateway_app import gateway_app, serving
from tests.infra import Infra

SMTP_USER = "mailer"
SMTP_PASSWORD = "smtp-secret-Zq8"
JWT_KEYS = "k2:second-signing-key-0123456789abcdef0123,k1:first-signing-key-0123456789abcdef01234"
LINK = re.compile(r"https?://\S+")


class Inbox:
    """What the SMTP server received, with a way to wait for the next message to an address."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.logins: list[str] = []
        self._changed = asyncio.Condition()
        self._loop: asyncio.AbstractEventLoop | None = None

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        message = email.message_from_bytes(envelope.original_content or b"", policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        assert self._loop is not None
        asyncio.run_coroutine_threadsafe(self._add(message), self._loop)
        return "250 OK"

    async def _add(self, message: EmailMessage) -> None:
        async with self._changed:
            self.messages.append(message)
            self._changed.notify_all()

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.messages if m["To"] == address]

    async def wait_for(self, address: str, count: int = 1, within: float = 10.0) -> EmailMessage:
        async def arrived() -> None:
            async with self._changed:
                await self._changed.wait_for(lambda: len(self.to(address)) >= count)

        await asyncio.wait_for(arrived(), within)
        return self.to(address)[count - 1]


def link_in(message: EmailMessage) -> str:
    body = message.get_body(("plain",))
    assert body is not None
    found = LINK.search(body.get_content())
    assert found, "the mail carries no link"
    return found.group(0)


def token_in(message: EmailMessage) -> str:
    return link_in(message).rstrip("/").rsplit("/", 1)[-1]


@pytest.fixture(scope="session")
async def smtp_inbox() -> AsyncIterator[tuple[Inbox, int]]:
    inbox = Inbox()
    inbox._loop = asyncio.get_running_loop()

    def authenticate(
        server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        ok = isinstance(data, LoginPassword) and data.login.decode() == SMTP_USER
        ok = ok and data.password.decode() == SMTP_PASSWORD
        if ok:
            inbox.logins.append(SMTP_USER)
        return AuthResult(success=ok)

    port = free_port()
    controller = Controller(
        inbox,
        hostname="127.0.0.1",
        port=port,
        authenticator=authenticate,
        auth_required=True,
        auth_require_tls=False,  # the test server has no certificate; production uses STARTTLS
    )
    controller.start()
    yield inbox, port
    controller.stop()


def accounts_settings(database_url: str, smtp_port: int, **overrides: Any) -> AccountsSettings:
    values: dict[str, Any] = {
        "environment": "test",
        "database_url": database_url,
        "public_url": "http://testserver",
        "mail_backend": "smtp",
        "smtp_host": "127.0.0.1",
        "smtp_port": smtp_port,
        "smtp_starttls": False,
        "smtp_username": SMTP_USER,
        "smtp_password": SMTP_PASSWORD,
        # Cheap hashes keep the suite fast; the timing test builds its own at realistic cost.
        "argon2_time_cost": 1,
        "argon2_memory_kib": 8 * 1024,
        "argon2_parallelism": 1,
        "email_resend_cooldown_seconds": 60,
    }
    values.update(overrides)
    return AccountsSettings(**values)


@dataclass
class AccountsStack:
    settings: AccountsSettings
    db: Database
    port: int
    inbox: Inbox
    channel: Any = None
    stub: accounts_pb2_grpc.AccountsServiceAsyncStub = field(init=False)


@pytest.fixture(scope="session")
async def accounts_stack(
    migrated_database: MigratedDatabase, smtp_inbox: tuple[Inbox, int]
) -> AsyncIterator[AccountsStack]:

    inbox, smtp_port = smtp_inbox
    url = await migrated_database("accounts")
    settings = accounts_settings(url, smtp_port)
    db = Database(url, application_name="atelier-accounts-tests")
    mail = build_mail_queue(settings)
    mail.backoff_seconds = 0.05
    stop = asyncio.Event()
    mail_task = asyncio.create_task(mail.run(stop))
    server = GrpcServer("accounts", host="127.0.0.1", port=0)
    accounts_pb2_grpc.add_AccountsServiceServicer_to_server(
        AccountsServicer(db, build_service(settings), mail), server.server
    )
    server.add(accounts_pb2.DESCRIPTOR.services_by_name["AccountsService"].full_name)
    port = await server.start()
    stack = AccountsStack(settings, db, port, inbox)
    stack.channel = identities.channel(f"127.0.0.1:{port}")
    stack.stub = accounts_pb2_grpc.AccountsServiceStub(stack.channel)  # type: ignore[assignment]
    yield stack
    await stack.channel.close()
    stop.set()
    await mail_task
    await server.stop(0.5)
    await db.dispose()


def accounts_gateway(infra: Infra, accounts_port: int, **overrides: Any) -> FastAPI:
    """The gateway app in front of the real accounts service, login limits out of the way, with
    `with_probes`' routes."""
    values: dict[str, Any] = {
        "environment": "test",
        "accounts_addr": f"127.0.0.1:{accounts_port}",
        "jwt_keys": JWT_KEYS,
        "login_ip_burst": 1000,
        "login_account_burst": 1000,
        "auth_ip_burst": 1000,
    }
    values.update(overrides)
    return with_probes(gateway_app(infra, **values))


def with_probes(app: FastAPI) -> FastAPI:
    """Stand-ins for endpoints other issues build: submitting work and recharging need a verified
    email; admin pages need the admin role."""

    @app.post("/test/submit")
    async def submit(principal: VerifiedPrincipal) -> dict[str, str]:
        return {"user_id": principal.user_id}

    @app.post("/test/recharge")
    async def recharge(principal: VerifiedPrincipal) -> dict[str, str]:
        return {"user_id": principal.user_id}

    @app.get("/test/admin")
    async def admin(principal: AdminPrincipal) -> dict[str, str]:
        return {"user_id": principal.user_id}

    return app


def running(app: FastAPI) -> contextlib.AbstractAsyncContextManager[httpx.AsyncClient]:
    """`app` served to a client calling from a public address (the login limits key on it)."""
    return serving(app, peer=("203.0.113.7", 50000), base_url="http://testserver")


@pytest.fixture
async def api(infra: Infra, accounts_stack: AccountsStack) -> AsyncIterator[httpx.AsyncClient]:
    async with running(accounts_gateway(infra, accounts_stack.port)) as client:
        yield client


def new_email(tag: str = "user") -> str:
    return f"{tag}-{uuid.uuid4().hex[:10]}@example.com"


PASSWORD = "correct horse battery staple"


# -- signing up and in through the gateway ---------------------------------------------------------
def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def register(api: httpx.AsyncClient, email: str, **extra: Any) -> dict[str, Any]:
    reply = await api.post("/v1/auth/register", json={"email": email, "password": PASSWORD, **extra})
    assert reply.status_code == 201, reply.text
    return reply.json()  # type: ignore[no-any-return]


async def login(api: httpx.AsyncClient, email: str, password: str = PASSWORD) -> dict[str, Any]:
    reply = await api.post("/v1/auth/login", json={"email": email, "password": password})
    assert reply.status_code == 200, reply.text
    assert reply.headers["cache-control"] == "no-store"
    return reply.json()  # type: ignore[no-any-return]


async def verified_user(api: httpx.AsyncClient, stack: AccountsStack) -> tuple[str, dict[str, Any]]:
    email = new_email()
    await register(api, email)
    message = await stack.inbox.wait_for(email)
    assert (await api.get(link_in(message).removeprefix("http://testserver"))).status_code == 200
    return email, await login(api, email)
