"""The life of a service process: settings → logs/tracing → database (create, migrate) → NATS →
gRPC server + background loops (outbox relay, consumers) → graceful shutdown on SIGTERM/SIGINT.

A service's `__main__.py` describes itself with a `ServiceDefinition` and calls `main`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import inspect
import logging
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic

from sqlalchemy import MetaData
from typing_extensions import TypeVar

from kit import logs, migrations, telemetry
from kit.bus import Bus
from kit.db import Database, ensure_database
from kit.grpc_server import GrpcServer, authorizer
from kit.metrics import serve_metrics
from kit.outbox import Outbox, OutboxRelay
from kit.settings import ServiceSettings
from kit.tls import files_for

log = logging.getLogger(__name__)

# A service's own settings class. Covariant, so code that needs only the shared fields takes a plain
# `Runtime` (= Runtime[ServiceSettings]) and still accepts any service's runtime.
SettingsT_co = TypeVar("SettingsT_co", bound=ServiceSettings, covariant=True, default=ServiceSettings)
SettingsT = TypeVar("SettingsT", bound=ServiceSettings, default=ServiceSettings)


@dataclass
class Runtime(Generic[SettingsT_co]):
    """What a running service holds: made at startup, closed at shutdown, passed explicitly.

    `settings` is typed as the service's own settings class (`Runtime[WorkflowSettings]`), so its
    users read their fields without isinstance checks; nothing reassigns it after startup."""

    name: str
    settings: SettingsT_co
    db: Database
    bus: Bus
    stop: asyncio.Event
    outbox: Outbox | None = None
    relay: OutboxRelay | None = None
    _background: list[Coroutine[Any, Any, None]] = field(default_factory=list)
    _closers: list[Callable[[], Awaitable[object]]] = field(default_factory=list)

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        """Run `coroutine` for the life of the process; it must return once `stop` is set."""
        self._background.append(coroutine)

    def close_on_stop(self, *closers: Callable[[], Awaitable[object]]) -> None:
        """At shutdown, once the server has drained its calls in flight and the background loops have
        stopped, await each closer in turn (the clients and pools `setup` opened): a call still being
        answered never finds its clients closed under it."""
        self._closers.extend(closers)

    async def close(self) -> None:
        for closer in self._closers:
            await closer()


Setup = Callable[[Runtime[SettingsT], GrpcServer], Awaitable[None]]
# An extra command-line verb of a service (`python -m services.<name> <verb> ...`): gets the settings and
# the remaining arguments, after logging is set up; returns its exit status (None means 0).
Command = Callable[[SettingsT, list[str]], Coroutine[Any, Any, int | None]]


@dataclass(frozen=True)
class ServiceDefinition(Generic[SettingsT]):
    """A service described for `main`: its settings class (usually the class itself as the factory)
    types the `Runtime` its `setup` and commands receive; `metadata` holds its tables (the outbox
    among them, when it publishes)."""

    name: str
    settings_factory: Callable[[], SettingsT]
    metadata: MetaData
    setup: Setup[SettingsT]
    commands: Mapping[str, Command[SettingsT]] = field(default_factory=dict)

    @property
    def migrations_dir(self) -> Path:
        """The service's Alembic history: the `migrations/` folder beside the module that defines
        `setup` (so `services/<name>/migrations`, whichever process of the service this is)."""
        return Path(inspect.getfile(self.setup)).parent / "migrations"


def main(definition: ServiceDefinition[SettingsT], argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in definition.commands:
        settings = definition.settings_factory()
        logs.setup(definition.name, level=settings.log_level, json_output=settings.log_json)
        raise SystemExit(asyncio.run(definition.commands[argv[0]](settings, argv[1:])) or 0)
    parser = argparse.ArgumentParser(prog=f"python -m services.{definition.name}")
    parser.add_argument(
        "command", nargs="?", default="serve", choices=["serve", "migrate", *definition.commands]
    )
    args = parser.parse_args(argv)
    settings = definition.settings_factory()
    logs.setup(definition.name, level=settings.log_level, json_output=settings.log_json)
    if args.command == "migrate":
        asyncio.run(migrate(definition, settings))
        return
    asyncio.run(serve(definition, settings))


async def migrate(definition: ServiceDefinition[SettingsT], settings: SettingsT) -> None:
    """Create the service's database when the settings allow it, then apply its migrations."""
    if settings.create_database:
        await ensure_database(settings.database_url)
    await migrations.upgrade_async(definition.migrations_dir, settings.database_url)
    log.info("migrated", extra={"database": definition.name})


async def serve(definition: ServiceDefinition[SettingsT], settings: SettingsT) -> None:
    telemetry.setup(definition.name, settings)
    if settings.create_database:
        await ensure_database(settings.database_url)
    if settings.migrate_on_start:
        await migrations.upgrade_async(definition.migrations_dir, settings.database_url)

    db = Database(
        settings.database_url,
        application_name=f"atelier-{definition.name}",
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
    )
    telemetry.instrument_engine(db.engine)
    bus = await Bus.from_settings(settings, name=f"atelier-{definition.name}")
    await bus.ensure_streams(settings.nats_stream_replicas)
    stop = asyncio.Event()
    runtime = Runtime(definition.name, settings, db, bus, stop)
    outbox_table = definition.metadata.tables.get("outbox")
    if outbox_table is not None:
        runtime.outbox = Outbox(outbox_table)
        runtime.relay = OutboxRelay(outbox_table, db, bus, service=definition.name)
        runtime.spawn(runtime.relay.run(stop))

    server = GrpcServer(
        definition.name,
        host=settings.grpc_host,
        port=settings.grpc_port,
        max_connection_age=settings.grpc_max_connection_age_seconds,
        tls=files_for(settings.grpc_tls_dir),
        health_port=settings.grpc_health_port,
        access=authorizer(settings, tls=bool(settings.grpc_tls_dir)),
    )
    await definition.setup(runtime, server)
    serve_metrics(settings.metrics_port)
    port = await server.start()
    tasks = [asyncio.create_task(coroutine) for coroutine in runtime._background]
    log.info("%s serving on port %d", definition.name, port)

    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    crashed = asyncio.create_task(_first_failure(tasks))
    await asyncio.wait([asyncio.create_task(stop.wait()), crashed], return_when=asyncio.FIRST_COMPLETED)
    stop.set()
    log.info("%s shutting down", definition.name)
    await server.stop(settings.shutdown_grace_seconds)
    _, pending = (
        await asyncio.wait(tasks, timeout=settings.shutdown_grace_seconds) if tasks else (set(), set())
    )
    for task in pending:
        task.cancel()
    await runtime.close()
    await bus.close()
    await db.dispose()
    if crashed.done() and crashed.exception() is not None:
        raise SystemExit(f"{definition.name}: a background loop failed: {crashed.exception()!r}")
    crashed.cancel()
    log.info("%s stopped", definition.name)


async def _first_failure(tasks: list[asyncio.Task[None]]) -> None:
    """Completes (with the error) when a background loop dies unexpectedly; never otherwise."""
    if not tasks:
        await asyncio.Event().wait()
    for finished in asyncio.as_completed(tasks):
        with contextlib.suppress(asyncio.CancelledError):
            await finished
    await asyncio.Event().wait()
