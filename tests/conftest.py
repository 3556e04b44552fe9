from __future__ import annotations

import asyncio
import contextlib
import importlib
import os
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from devkit.pki import user_token_keys
from kit.bus import Bus
from kit.db import Database, drop_database, ensure_database, with_database
from kit.migrations import upgrade_async
from tests import repository_bounds
from tests.infra import Infra, start_infra

ROOT = Path(__file__).resolve().parent.parent

# Fixtures more than one suite needs, registered once here rather than imported into each conftest.
pytest_plugins = ["tests.accounts.stack", "tests.catalog.stack", "tests.generation.stack"]


# Rate limits are shared by every gateway of a namespace (through NATS), and the suite's gateways sign
# in from 127.0.0.1 hundreds of times: unless a test sets a limit, it refills at once.
LIMITS = ("LOGIN_IP", "LOGIN_ACCOUNT", "AUTH_IP", "API_ACCOUNT")
FAST_LIMITS = {f"ATELIER_{limit}_REFILL_SECONDS": "0.001" for limit in LIMITS}


# The suite's end-user token keys, set as the module loads (before any suite's conftest mints a token):
# in-process gateways sign with them, in-process services verify (tests/identities.py). Stacks the
# launcher starts make their own, with their certificates.
if "ATELIER_USER_TOKEN_SIGNING_KEY_FILE" not in os.environ:
    _signing, _public = user_token_keys(Path(tempfile.mkdtemp(prefix="atelier-user-token-")))
    os.environ["ATELIER_USER_TOKEN_SIGNING_KEY_FILE"] = str(_signing)
    os.environ["ATELIER_USER_TOKEN_PUBLIC_KEYS_FILE"] = str(_public)


def pytest_configure() -> None:
    repository_bounds.install(repository_bounds.neighbours())
    for name, value in FAST_LIMITS.items():
        os.environ.setdefault(name, value)


@pytest.fixture(scope="session")
def infra() -> Iterator[Infra]:
    infra = start_infra()
    yield infra
    infra.stop()


@pytest.fixture(scope="session")
async def bus(infra: Infra) -> AsyncIterator[Bus]:
    bus = await Bus.connect(infra.nats_url, namespace=infra.namespace, name="atelier-tests")
    await bus.ensure_streams()
    yield bus
    with contextlib.suppress(Exception):
        await bus.delete_streams()
    await bus.close()


MigratedDatabase = Callable[[str], Awaitable[str]]


@pytest.fixture(scope="session")
async def migrated_database(infra: Infra) -> AsyncIterator[MigratedDatabase]:
    """`await migrated_database("ledger")` → the URL of this run's ledger database, migrated to head."""
    made: dict[str, str] = {}
    lock = asyncio.Lock()

    async def make(service: str) -> str:
        async with lock:
            if service not in made:
                url = with_database(infra.database_server, infra.database_name(service)).render_as_string(
                    hide_password=False
                )
                await ensure_database(url)
                await upgrade_async(ROOT / "services" / service / "migrations", url)
                made[service] = url
            return made[service]

    yield make
    for url in made.values():
        await drop_database(url)


@pytest.fixture
async def database_factory() -> AsyncIterator[Callable[[str, str], Database]]:
    """Open `Database` objects that are disposed after the test."""
    opened: list[Database] = []

    def open_database(url: str, name: str = "tests") -> Database:
        db = Database(url, application_name=f"atelier-{name}")
        opened.append(db)
        return db

    yield open_database
    for db in opened:
        await db.dispose()


def service_models(service: str) -> object:
    return importlib.import_module(f"services.{service}.models")
