"""Every service's migrations apply from empty on PostgreSQL, and match its models."""

from __future__ import annotations

import importlib

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, pool

from kit.db import drop_database, ensure_database, libpq_dsn, sqlalchemy_url, with_database
from kit.migrations import upgrade_async
from tests.conftest import ROOT
from tests.infra import Infra

SERVICES = ["accounts", "catalog", "ledger", "generation", "workflow"]


@pytest.mark.parametrize("service", SERVICES)
async def test_migrations_apply_from_empty_and_match_the_models(infra: Infra, service: str) -> None:
    url = with_database(infra.database_server, f"{infra.database_name(service)}_mig").render_as_string(
        hide_password=False
    )
    await ensure_database(url)
    try:
        await upgrade_async(ROOT / "services" / service / "migrations", url)
        await upgrade_async(ROOT / "services" / service / "migrations", url)  # a second run is a no-op
        async with await psycopg.AsyncConnection.connect(libpq_dsn(url)) as conn:
            tables = {
                row[0]
                for row in await (
                    await conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
                ).fetchall()
            }
        assert {"outbox", "inbox", "alembic_version"} <= tables
        metadata = importlib.import_module(f"services.{service}.models").metadata
        engine = create_engine(sqlalchemy_url(url), poolclass=pool.NullPool)
        with engine.connect() as connection:
            diff = compare_metadata(MigrationContext.configure(connection), metadata)
        engine.dispose()
        assert diff == [], f"models and migrations of {service} differ: {diff}"
    finally:
        await drop_database(url)
