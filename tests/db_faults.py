"""Failures injected into a test's own PostgreSQL database with a trigger: the statement fails, the
commit fails (a deferred constraint trigger), the connection drops (the backend ends itself), or the
statement stalls (so that the caller can go away meanwhile). Nothing in the code under test is mocked."""

from __future__ import annotations

from typing import Literal

from sqlalchemy import text

from kit.db import Database

Fault = Literal["error", "error_at_commit", "drop", "stall"]

_BODY = {
    # Not an integrity error: the paths under test must not depend on the kind of failure.
    "error": "RAISE EXCEPTION 'injected fault' USING ERRCODE = 'data_exception'",
    "error_at_commit": "RAISE EXCEPTION 'injected fault at commit' USING ERRCODE = 'data_exception'",
    "drop": "PERFORM pg_terminate_backend(pg_backend_pid())",
    "stall": "PERFORM pg_sleep(3)",
}


async def inject(
    db: Database, table: str, fault: Fault, *, on: Literal["INSERT", "UPDATE"] = "INSERT", when: str = "true"
) -> None:
    """Every `on` of `table` matching `when` (a trigger WHEN condition) meets `fault` from now on."""
    async with db.transaction() as session:
        await session.execute(
            text(
                "CREATE OR REPLACE FUNCTION atelier_test_fault() RETURNS trigger LANGUAGE plpgsql AS "
                f"$$ BEGIN {_BODY[fault]}; RETURN NEW; END $$"
            )
        )
        if fault == "error_at_commit":
            trigger = (
                f"CREATE CONSTRAINT TRIGGER atelier_test_fault AFTER {on} ON {table} "
                "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW"
            )
        else:
            trigger = f"CREATE TRIGGER atelier_test_fault BEFORE {on} ON {table} FOR EACH ROW"
        await session.execute(text(f"{trigger} WHEN ({when}) EXECUTE FUNCTION atelier_test_fault()"))


async def heal(db: Database, table: str) -> None:
    async with db.transaction() as session:
        await session.execute(text(f"DROP TRIGGER IF EXISTS atelier_test_fault ON {table}"))
