from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable

import pytest

from kit.db import Database
from kit.outbox import Outbox
from services.ledger.models import outbox
from services.ledger.service import Ledger
from tests.conftest import MigratedDatabase


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
