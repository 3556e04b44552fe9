"""The server-side functions come from `services/ledger/sql/`: the migrated database holds exactly
those, as written there, and the retired one-call hold and capture are gone (and come back on a
downgrade)."""

from __future__ import annotations

import asyncio

from alembic import command
from sqlalchemy import text

from kit.db import Database
from kit.migrations import alembic_config, upgrade_async
from services.ledger.sql import FUNCTIONS, HERE, definitions
from tests.conftest import ROOT

MIGRATIONS = ROOT / "services" / "ledger" / "migrations"
LEDGER_FUNCTIONS = "SELECT proname FROM pg_proc WHERE proname LIKE 'ledger\\_%' ORDER BY proname"


async def functions(db: Database) -> list[str]:
    async with db.transaction() as session:
        return list((await session.execute(text(LEDGER_FUNCTIONS))).scalars())


def test_every_sql_file_is_loaded() -> None:
    assert sorted(path.stem for path in HERE.glob("*.sql")) == sorted(FUNCTIONS)
    for name, statement in zip(FUNCTIONS, definitions(), strict=True):
        assert f"CREATE OR REPLACE FUNCTION {name}(" in statement


async def test_the_database_has_the_functions_of_the_sql_files(db: Database) -> None:
    assert await functions(db) == sorted(FUNCTIONS)


async def test_a_downgrade_brings_back_the_retired_functions(private_url: str, private_db: Database) -> None:
    await asyncio.to_thread(command.downgrade, alembic_config(MIGRATIONS, private_url), "a3e8c1f0b7d2")
    assert await functions(private_db) == sorted([*FUNCTIONS, "ledger_capture", "ledger_hold"])
    await upgrade_async(MIGRATIONS, private_url)
    assert await functions(private_db) == sorted(FUNCTIONS)
