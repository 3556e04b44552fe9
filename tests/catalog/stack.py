"""A real catalog service per test: its own database (cloned from a migrated template), the outbox
relay publishing to this run's NATS namespace, and the gRPC server on a free port.

A pytest plugin (`pytest_plugins` in tests/conftest.py): its fixtures are registered once, for the
catalog suite, the contract tests of tests/fakes and the admin API's tests."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import psycopg
import pytest
from psycopg import sql

from atelier.catalog.v1 import catalog_pb2_grpc
from kit.bus import Bus
from kit.db import Database, drop_database, libpq_dsn, sqlalchemy_url, with_database
from kit.grpc_server import GrpcServer
from kit.identity import Identity
from kit.outbox import Outbox, OutboxRelay
from kit.service import Runtime
from services.catalog.__main__ import setup
from services.catalog.models import outbox as outbox_table
from services.catalog.settings import CatalogSettings
from tests import identities
from tests.conftest import MigratedDatabase
from tests.infra import Infra

ADMIN = identities.user(Identity(user_id="admin-1", role="admin"))
USER = identities.user(Identity(user_id="user-1"))


@dataclass
class CatalogStack:
    url: str
    runtime: Runtime
    port: int
    channel: grpc.aio.Channel
    stub: catalog_pb2_grpc.CatalogServiceStub

    @property
    def db(self) -> Database:
        return self.runtime.db


@pytest.fixture(scope="session")
async def catalog_template(migrated_database: MigratedDatabase) -> str:
    """The migrated (empty) catalog database that each test's database is cloned from."""
    return await migrated_database("catalog")


async def clone_database(template: str, name: str) -> str:
    admin = libpq_dsn(sqlalchemy_url(template).set(database="postgres"))
    source = str(sqlalchemy_url(template).database)
    async with await psycopg.AsyncConnection.connect(admin, autocommit=True) as conn:
        await conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(source))
        )
    return with_database(template, name).render_as_string(hide_password=False)


@pytest.fixture
async def catalog(catalog_template: str, bus: Bus, infra: Infra) -> AsyncIterator[CatalogStack]:
    url = await clone_database(catalog_template, f"{infra.database_name('catalog')}_{uuid.uuid4().hex[:8]}")
    settings = CatalogSettings(database_url=url, namespace=infra.namespace, nats_url=infra.nats_url)
    db = Database(url, application_name="atelier-catalog-tests")
    stop = asyncio.Event()
    runtime = Runtime("catalog", settings, db, bus, stop)
    runtime.outbox = Outbox(outbox_table)
    runtime.relay = OutboxRelay(outbox_table, db, bus, service="catalog")
    relay = asyncio.create_task(runtime.relay.run(stop))
    server = GrpcServer("catalog", host="127.0.0.1", port=0)
    await setup(runtime, server)
    port = await server.start()
    channel = identities.channel(f"127.0.0.1:{port}")
    try:
        yield CatalogStack(url, runtime, port, channel, catalog_pb2_grpc.CatalogServiceStub(channel))
    finally:
        stop.set()
        await channel.close()
        await server.stop(0.2)
        await relay
        await db.dispose()
        await drop_database(url)
