"""The happy path of a batch of holds and captures: one call of the server-side `ledger_apply`."""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from sqlalchemy.ext.asyncio import AsyncSession

from services.ledger.repository.records import CapturedHold, StepRecord, of

# The happy paths of a batch of holds and captures in one call of a server-side function (defined by
# a migration): one row per step, in order, whose `outcome` is "ok" when the transfer was written,
# "slow" when nothing was and the caller must take the general path. Plain psycopg: the statement
# shares a pipeline with the batch's events and its commit.
APPLY = "SELECT * FROM ledger_apply(%s)"


def _json_default(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


_dumps = functools.partial(json.dumps, default=_json_default, separators=(",", ":"))


async def driver_connection(session: AsyncSession) -> psycopg.AsyncConnection[Any]:
    """The psycopg connection under the session, in the session's transaction."""
    connection = await session.connection()
    driver = (await connection.get_raw_connection()).driver_connection
    if not isinstance(driver, psycopg.AsyncConnection):
        raise TypeError("the ledger runs on psycopg 3")
    return driver


async def apply_steps(
    connection: psycopg.AsyncConnection[Any], steps: Sequence[Mapping[str, Any]]
) -> list[StepRecord | None]:
    """One record per step (`ledger_apply`), run in order in the connection's open transaction; None
    for a step that wrote nothing."""
    cursor = connection.cursor(row_factory=dict_row)
    await cursor.execute(APPLY, [Jsonb(list(steps), dumps=_dumps)])
    return [_step(row) for row in await cursor.fetchall()]


def _step(row: dict[str, Any]) -> StepRecord | None:
    if row["outcome"] != "ok":
        return None
    # A hold's row has the capture-only columns NULL.
    captured = of(CapturedHold, row) if row["hold_debit_account"] is not None else None
    return of(StepRecord, {**row, "captured": captured})
