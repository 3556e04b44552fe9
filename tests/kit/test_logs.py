"""Secrets never reach a log line: not in the message, not in an exception's text or traceback, not in
the stack, not in an extra; and a failed SQL statement never shows its bound parameters."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from kit.db import Database, with_database
from kit.logs import JsonFormatter, TextFormatter
from tests.infra import Infra
from tests.json_logs import json_logs

ARGON2 = "$argon2id$v=19$m=65536,t=3,p=4$c29tZXNhbHRzb21lc2FsdA$2cZ1kq0m7Xb3pQv8Yw4nRk9sT1uV6zA0bC3dE5fG7hI"
API_KEY = "atl_live_0a1b2c3d_" + "Q" * 43
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1c2VyIn0.c2lnbmF0dXJlLXNpZ25hdHVyZS1zaWduYXR1cmU"
LINK_TOKEN = "Zm9vYmFyLXRoZS10b2tlbi1pbi10aGUtbGluay0xMjM0NTY"
TOKEN_HASH = "b'\\x8f\\x01\\xa2secret-digest'"
# What a SQLAlchemy error carries when parameters are shown: the hash in a dict, keyed by column.
STATEMENT_ERROR = (
    "(psycopg.DataError) PostgreSQL text fields cannot contain NUL (0x00) bytes\n"
    "[SQL: INSERT INTO users (id, email, password_hash) VALUES (%(id)s, %(email)s, %(password_hash)s)]\n"
    f"[parameters: {{'id': UUID('0b7c'), 'email': 'x@example.com', 'password_hash': '{ARGON2}', "
    f"'key_hash': {TOKEN_HASH}, 'token_hash': {TOKEN_HASH}}}]"
)
SECRETS = (ARGON2, "$argon2", API_KEY, "atl_", JWT, "eyJ", "secret-digest", LINK_TOKEN)


class Unstringable:
    """An extra value json.dumps would turn into text with str()."""

    def __str__(self) -> str:
        return f"object holding {API_KEY} and {ARGON2}"


def _raise() -> None:
    raise RuntimeError(
        STATEMENT_ERROR
        + f"\nwhile using {API_KEY} and Bearer {JWT} for GET /v1/auth/verify-email/{LINK_TOKEN}"
    )


def test_an_exception_and_its_traceback_are_scrubbed() -> None:
    logger = logging.getLogger("tests.logs")
    with json_logs("tests.logs") as written:
        try:
            _raise()
        except RuntimeError:
            logger.exception("statement failed", stack_info=True, extra={"detail": Unstringable()})
    [entry] = written.entries()
    assert "RuntimeError" in entry["exc"]
    assert "Traceback" in entry["exc"]
    assert "test_logs.py" in entry["stack"], "the stack is on the line, scrubbed"
    for secret in SECRETS:
        assert secret not in written.text, secret


def test_the_text_formatter_scrubs_the_traceback_too() -> None:
    handler_output: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            handler_output.append(self.format(record))

    handler = Collect()
    handler.setFormatter(TextFormatter("%(levelname)s %(message)s"))
    logger = logging.getLogger("tests.logs.text")
    logger.addHandler(handler)
    try:
        try:
            _raise()
        except RuntimeError:
            logger.error("statement failed", exc_info=True, stack_info=True)
    finally:
        logger.removeHandler(handler)
    [line] = handler_output
    assert "Traceback" in line
    assert "Stack (most recent call last)" in line
    for secret in SECRETS:
        assert secret not in line, secret


def test_scrubbing_keeps_what_is_not_secret() -> None:
    formatter = JsonFormatter("tests")
    record = logging.LogRecord(
        "tests", logging.INFO, __file__, 1, "order %s paid by %s", ("ro_1", "user-7"), None
    )
    record.amount = 120
    record.model = "gemini-2.5-flash"
    line = formatter.format(record)
    assert "order ro_1 paid by user-7" in line
    assert '"amount": 120' in line
    assert '"model": "gemini-2.5-flash"' in line


@pytest.fixture
async def database(infra: Infra) -> AsyncIterator[Database]:
    db = Database(with_database(infra.database_server, "postgres"), application_name="atelier-tests-logs")
    yield db
    await db.dispose()


async def _fail_and_log(database: Database, secret: str) -> None:
    """A statement that fails with `secret` bound, logged the way a service logs an unhandled error."""
    try:
        async with database.transaction() as session:
            await session.execute(text("SELECT CAST(:note AS text), 1 / 0"), {"note": secret})
    except DBAPIError:
        logging.getLogger("tests.logs.db").exception("statement failed")
        raise


async def test_a_failed_statement_never_shows_its_parameters(database: Database) -> None:
    """Whatever a parameter is called, its value stays out of the error and the log line."""
    secret = f"not-a-known-secret-shape-{uuid.uuid4().hex}"
    with json_logs("tests.logs.db") as written, pytest.raises(DBAPIError, match="division by zero") as failed:
        await _fail_and_log(database, secret)
    assert secret not in str(failed.value)
    assert "division by zero" in written.text, "the error itself is still logged"
    assert secret not in written.text
