"""The async SQLAlchemy engine on psycopg 3, made at startup and disposed at shutdown."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from psycopg import sql
from sqlalchemy import URL, event, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import Session

log = logging.getLogger(__name__)

_AFTER_COMMIT = "atelier_after_commit"


def after_commit(session: AsyncSession, callback: Callable[[], Any]) -> None:
    """Run `callback` once the session's transaction commits, never if it rolls back: for metrics
    and notices that must not count work that did not happen. A failing callback is only logged."""
    session.sync_session.info.setdefault(_AFTER_COMMIT, []).append(callback)


@event.listens_for(Session, "after_commit")
def _run_after_commit(session: Session) -> None:
    for callback in session.info.pop(_AFTER_COMMIT, []):
        try:
            callback()
        except Exception:
            log.exception("an after-commit callback failed")


@event.listens_for(Session, "after_rollback")
def _drop_after_commit(session: Session) -> None:
    session.info.pop(_AFTER_COMMIT, None)


def sqlalchemy_url(url: str | URL) -> URL:
    """Normalise `postgresql://...` (or `postgres://`) to the psycopg 3 driver."""
    parsed = make_url(url) if isinstance(url, str) else url
    if parsed.drivername in ("postgresql", "postgres", "postgresql+psycopg2"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def with_database(url: str | URL, database: str) -> URL:
    return sqlalchemy_url(url).set(database=database)


def libpq_dsn(url: str | URL) -> str:
    """A DSN psycopg understands directly (no SQLAlchemy driver suffix)."""
    return sqlalchemy_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


class Database:
    def __init__(
        self,
        url: str | URL,
        *,
        application_name: str,
        pool_size: int = 5,
        max_overflow: int = 10,
        echo: bool = False,
    ) -> None:
        self.url = sqlalchemy_url(url)
        self.application_name = application_name
        self.engine: AsyncEngine = create_async_engine(
            self.url,
            pool_size=pool_size,
            max_overflow=max_overflow,
            pool_pre_ping=True,
            pool_recycle=1800,
            echo=echo,
            # A failed statement's error (logged with its traceback) must not carry its values: they
            # include password hashes, token and key digests, prompts.
            hide_parameters=True,
            connect_args={"application_name": application_name},
        )
        self.sessionmaker = async_sessionmaker(self.engine, expire_on_commit=False, autoflush=False)

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A session whose transaction the caller owns (`async with session.begin()`)."""
        async with self.sessionmaker() as session:
            yield session

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A unit of work: commits when the block ends normally, rolls back on any exception."""
        async with self.sessionmaker() as session, session.begin():
            yield session

    async def connect(self) -> psycopg.AsyncConnection[Any]:
        """A plain psycopg connection of its own, outside the pool: for a hot path that pipelines its
        statements itself (the caller closes it)."""
        return await psycopg.AsyncConnection.connect(
            libpq_dsn(self.url), application_name=self.application_name
        )

    async def dispose(self) -> None:
        await self.engine.dispose()


class OwnConnection:
    """A psycopg connection of one hot loop's own, outside the pool, opened on first use and kept.

    Each `transaction()` runs in pipeline mode (statements queue, fetching a result or the commit sends
    them), so a transaction costs as few round trips as its data dependencies allow. A failure that
    leaves the connection in an unknown state — broken, closed, or still inside a transaction — drops
    it, and the next transaction connects afresh."""

    def __init__(self, connect: Callable[[], Awaitable[psycopg.AsyncConnection[Any]]]) -> None:
        self.connect = connect
        self._connection: psycopg.AsyncConnection[Any] | None = None

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        if self._connection is None or self._connection.closed:
            self._connection = await self.connect()
        connection = self._connection
        try:
            async with connection.pipeline(), connection.transaction():
                yield connection
        except BaseException:
            if (
                connection.broken
                or connection.closed
                or connection.info.transaction_status != psycopg.pq.TransactionStatus.IDLE
            ):
                self._connection = None
                await connection.close()
            raise

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()
            self._connection = None


async def ensure_database(url: str | URL) -> bool:
    """Create the database named in `url` when it does not exist yet. Returns True when created."""
    target = sqlalchemy_url(url)
    name = target.database
    if not name:
        raise ValueError("the database URL names no database")
    admin_dsn = libpq_dsn(target.set(database="postgres"))
    for attempt in range(30):
        try:
            async with await psycopg.AsyncConnection.connect(admin_dsn, autocommit=True) as conn:
                found = await conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
                if await found.fetchone():
                    return False
                try:
                    await conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
                except (psycopg.errors.DuplicateDatabase, psycopg.errors.UniqueViolation):
                    return False
                log.info("created database", extra={"database": name})
                return True
        except psycopg.OperationalError:
            if attempt == 29:
                raise
            await asyncio.sleep(0.5)
    return False


async def drop_database(url: str | URL) -> None:
    target = sqlalchemy_url(url)
    admin_dsn = libpq_dsn(target.set(database="postgres"))
    async with await psycopg.AsyncConnection.connect(admin_dsn, autocommit=True) as conn:
        await conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(str(target.database)))
        )
