from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable

import pytest

from kit.db import Database, drop_database, ensure_database, with_database
from kit.migrations import upgrade_async
from kit.outbox import Outbox
from services.ledger.models import outbox
from services.ledger.service import Ledger
from tests.conftest import ROOT, MigratedDatabase
from tests.infra import Infra


@pytest.fixture(scope="session")
async def ledger_url(migrated_database: MigratedDatabase) -> str:
    return await migrated_database("ledger")


@pytest.fixture
async def db(ledger_url: str) -> AsyncIterator[Database]:
    database = Database(ledger_url, application_name="atelier-tests", pool_size=20, max_overflow=60)
    yield database
    await database.dispose()


@pytest.fixture
def ledger() -> Ledger:
    return Ledger(Outbox(outbox))


@pytest.fixture
def new_id() -> Callable[[str], str]:
    """Unique ids, so tests share one database without seeing each other's rows."""
    return lambda prefix: f"{prefix}-{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def private_url(infra: Infra) -> AsyncIterator[str]:
    """A ledger database of this test alone (for whole-ledger checks such as reconcile)."""
    url = with_database(infra.database_server, f"{infra.database_name('ledger')}_{uuid.uuid4().hex[:6]}")
    rendered = url.render_as_string(hide_password=False)
    await ensure_database(rendered)
    await upgrade_async(ROOT / "services" / "ledger" / "migrations", rendered)
    yield rendered
    await drop_database(rendered)


@pytest.fixture
async def private_db(private_url: str) -> AsyncIterator[Database]:
    database = Database(private_url, application_name="atelier-tests")
    yield database
    await database.dispose()
