"""The admin API for real: the gateway app (httpx over ASGI) in front of the real catalog (a fresh
seeded database per test), ledger and accounts services running in-process. Generation and workflow
are stood in for by a small fake that answers GetTask for the tasks a test registers, and
UNIMPLEMENTED for everything else (the real services are being built elsewhere)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, cast

import grpc
import httpx
import pytest
from fastapi import FastAPI

from atelier.accounts.v1 import accounts_pb2
from atelier.generation.v1 import generation_pb2_grpc
from atelier.ledger.v1 import ledger_pb2_grpc
from atelier.workflow.v1 import workflow_pb2_grpc
from gateway.app import create_app
from gateway.auth import AccessTokens, identity_of
from gateway.settings import GatewaySettings
from kit.bus import Bus
from kit.db import Database, drop_database, ensure_database, with_database
from kit.grpc_server import GrpcServer
from kit.identity import Identity
from kit.migrations import upgrade_async
from kit.money import Credits, Money
from kit.outbox import Outbox
from kit.service import Runtime
from services.ledger.models import outbox
from services.ledger.service import Ledger
from services.ledger.servicer import LedgerServicer
from services.ledger.settings import LedgerSettings
from tests import identities
from tests.accounts.stack import JWT_KEYS, PASSWORD, AccountsStack, new_email
from tests.catalog.stack import CatalogStack
from tests.conftest import ROOT
from tests.fakes.generation import FakeGeneration
from tests.gateway_app import gateway_settings, serving
from tests.infra import Infra

if TYPE_CHECKING:
    from atelier.accounts.v1.accounts_pb2_grpc import AccountsServiceAsyncStub
    from atelier.ledger.v1.ledger_pb2_grpc import LedgerServiceAsyncStub

TRACING_UI = "https://traces.example/trace/{trace_id}?from=admin"


@dataclass
class LedgerStack:
    url: str
    db: Database
    port: int
    ledger: Ledger
    stub: LedgerServiceAsyncStub

    async def sandbox_order(self, user_id: str) -> str:
        """A pending 300 CNY sandbox recharge order of `user_id` (300 credits and 30 bonus): its id."""
        order_id = f"ro_{uuid.uuid4().hex[:20]}"
        async with self.db.transaction() as session:
            await self.ledger.create_order(
                session,
                order_id=order_id,
                user_id=user_id,
                method="sandbox",
                provider="sandbox",
                amount=Money(30000, "CNY"),
                plan_code="",
                paid_credits=Credits.whole(300),
                bonus_credits=Credits.whole(30),
                catalog_version=1,
                expires_at=None,
            )
        return order_id


@pytest.fixture(scope="session")
async def admin_ledger_url(infra: Infra) -> AsyncIterator[str]:
    """A ledger database of this suite alone: its recharges and adjustments stay out of the ledger
    suite's counts, and whole-ledger checks (reconcile) see only what these tests did."""
    url = with_database(infra.database_server, f"{infra.database_name('ledger')}_admin").render_as_string(
        hide_password=False
    )
    await ensure_database(url)
    await upgrade_async(ROOT / "services" / "ledger" / "migrations", url)
    yield url
    await drop_database(url)


@pytest.fixture(scope="session")
async def ledger_stack(admin_ledger_url: str, bus: Bus) -> AsyncIterator[LedgerStack]:
    ledger_url = admin_ledger_url
    db = Database(ledger_url, application_name="atelier-admin-tests-ledger")
    runtime = Runtime("ledger", LedgerSettings(), db, bus, asyncio.Event(), outbox=Outbox(outbox))
    ledger = Ledger(Outbox(outbox))
    server = GrpcServer("ledger", host="127.0.0.1", port=0)
    ledger_pb2_grpc.add_LedgerServiceServicer_to_server(LedgerServicer(runtime, ledger), server.server)
    port = await server.start()
    async with identities.channel(f"127.0.0.1:{port}") as channel:
        stub = cast("LedgerServiceAsyncStub", ledger_pb2_grpc.LedgerServiceStub(channel))
        yield LedgerStack(ledger_url, db, port, ledger, stub)
    await server.stop(0.5)
    await db.dispose()


@dataclass
class Fakes:
    port: int
    generation: FakeGeneration
    workflow_port: int


@pytest.fixture(scope="session")
async def fakes(bus: Bus) -> AsyncIterator[Fakes]:
    # The generation fake raises domain errors, mapped by the shared interceptor of `GrpcServer`.
    # RPCs a fake leaves out answer UNIMPLEMENTED (the generated base); only its stub calls them abstract.
    generation = FakeGeneration(bus)  # type: ignore[abstract]
    server = GrpcServer("generation-fake", host="127.0.0.1", port=0)
    generation_pb2_grpc.add_GenerationServiceServicer_to_server(generation, server.server)
    # Plain server: the interceptor would turn the base's NotImplementedError into INTERNAL.
    workflow = grpc.aio.server()
    workflow_pb2_grpc.add_WorkflowServiceServicer_to_server(
        workflow_pb2_grpc.WorkflowServiceServicer(),  # type: ignore[abstract]  # every RPC: UNIMPLEMENTED
        workflow,
    )
    workflow_port = workflow.add_insecure_port("127.0.0.1:0")
    port = await server.start()
    await workflow.start()
    yield Fakes(port, generation, workflow_port)
    await workflow.stop(0.2)
    await server.stop(0.2)


@dataclass
class Admin:
    """A client of the gateway and the people who call it, each signed in with a real session."""

    http: httpx.AsyncClient
    app: FastAPI
    tokens: AccessTokens
    accounts: AccountsServiceAsyncStub
    ledger: LedgerStack
    catalog: CatalogStack | None
    fakes: Fakes
    admin_id: str = ""
    admin_email: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    emails: dict[str, str] = field(default_factory=dict)

    async def bearer(self, user_id: str) -> dict[str, str]:
        """A fresh session of this user (made by `new_user`, or the admin): its access token."""
        token = await sign_in(self.accounts, self.tokens, self.emails[user_id])
        return {"Authorization": f"Bearer {token}"}

    async def new_user(self) -> str:
        email = new_email("member")
        reply = await self.accounts.Register(
            accounts_pb2.RegisterRequest(email=email, password=PASSWORD, locale="en")
        )
        self.emails[str(reply.user.id)] = email
        return str(reply.user.id)


async def sign_in(accounts: AccountsServiceAsyncStub, tokens: AccessTokens, email: str) -> str:
    """What POST /v1/auth/login does, without its per-IP limit: a session, and its access token."""
    reply = await accounts.Login(accounts_pb2.LoginRequest(email=email, password=PASSWORD))
    return tokens.mint(identity_of(reply.user), reply.refresh_token.session_id).token


async def ensure_admin(accounts: AccountsServiceAsyncStub) -> tuple[str, str]:
    """A new active admin (as the launcher's CLI makes one): (user id, email)."""
    email = new_email("admin")
    ensured = await accounts.EnsureAdmin(
        accounts_pb2.EnsureAdminRequest(email=email, password=PASSWORD, locale="en"),
        metadata=identities.user(Identity(user_id=str(uuid.uuid4()), role="admin")),
    )
    return str(ensured.user.id), email


def settings_for(infra: Infra, **addresses: str) -> GatewaySettings:
    """A gateway reaching the services named in `addresses` (`accounts="127.0.0.1:5001"`), and no other."""
    named = {f"{service}_addr": address for service, address in addresses.items()}
    return gateway_settings(infra, environment="test", jwt_keys=JWT_KEYS, tracing_ui_url=TRACING_UI, **named)


async def admin_client(
    infra: Infra,
    accounts_stack: AccountsStack,
    ledger_stack: LedgerStack,
    fakes: Fakes,
    catalog_stack: CatalogStack | None,
    **addresses: str,
) -> AsyncIterator[Admin]:
    base = {
        "accounts": f"127.0.0.1:{accounts_stack.port}",
        "ledger": f"127.0.0.1:{ledger_stack.port}",
        "generation": f"127.0.0.1:{fakes.port}",
        "workflow": f"127.0.0.1:{fakes.workflow_port}",
    }
    if catalog_stack is not None:
        base["catalog"] = f"127.0.0.1:{catalog_stack.port}"
    base.update(addresses)
    settings = settings_for(infra, **base)
    app = create_app(settings)
    async with serving(app) as http:
        admin = Admin(
            http, app, AccessTokens(settings), accounts_stack.stub, ledger_stack, catalog_stack, fakes
        )
        admin.admin_id, admin.admin_email = await ensure_admin(accounts_stack.stub)
        admin.emails[admin.admin_id] = admin.admin_email
        admin.headers = await admin.bearer(admin.admin_id)
        yield admin


@pytest.fixture
async def api(
    infra: Infra,
    accounts_stack: AccountsStack,
    ledger_stack: LedgerStack,
    fakes: Fakes,
    catalog: CatalogStack,
) -> AsyncIterator[Admin]:
    async for admin in admin_client(infra, accounts_stack, ledger_stack, fakes, catalog):
        yield admin


@pytest.fixture
async def api_without_catalog(
    infra: Infra, accounts_stack: AccountsStack, ledger_stack: LedgerStack, fakes: Fakes
) -> AsyncIterator[Admin]:
    """For ledger and accounts tests: no catalog database to clone."""
    async for admin in admin_client(infra, accounts_stack, ledger_stack, fakes, None):
        yield admin


def random_user_id() -> str:
    return str(uuid.uuid4())
