"""The pieces a service declares itself with: its tables (`kit.service_tables`), its definition
(`kit.service`), and the kinds of domain error (`kit.errors`)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import cast

import grpc
from sqlalchemy import DateTime, MetaData, Table

from kit.bus import Bus
from kit.db import Database
from kit.errors import Conflict, DomainError, FailedPrecondition, NotFound, ResourceExhausted
from kit.grpc_server import GrpcServer
from kit.service import Runtime, ServiceDefinition
from kit.service_tables import service_tables, timestamps
from kit.settings import ServiceSettings


def test_each_service_gets_its_own_metadata_with_outbox_and_inbox() -> None:
    first, second = service_tables(), service_tables()
    assert first.metadata is not second.metadata
    assert set(first.metadata.tables) == {"outbox", "inbox"}
    assert first.outbox is first.metadata.tables["outbox"]
    assert first.inbox is first.metadata.tables["inbox"]
    assert first.metadata.naming_convention["ck"] == "ck_%(table_name)s_%(constraint_name)s"


def test_timestamps_are_fresh_non_null_columns_defaulting_to_now() -> None:
    metadata = MetaData()
    one = Table("one", metadata, *timestamps())
    two = Table("two", metadata, *timestamps())
    for table in (one, two):
        assert [column.name for column in table.columns] == ["created_at", "updated_at"]
        for column in table.columns:
            assert isinstance(column.type, DateTime)
            assert column.type.timezone
            assert not column.nullable
            assert column.server_default is not None
    assert one.c.created_at is not two.c.created_at


async def _setup(runtime: Runtime, server: GrpcServer) -> None:
    return None


def test_a_definition_finds_its_migrations_beside_its_setup() -> None:
    definition = ServiceDefinition("probe", ServiceSettings, MetaData(), _setup)
    assert definition.migrations_dir == Path(__file__).parent / "migrations"


async def test_close_on_stop_waits_for_the_drain_then_closes_in_order() -> None:
    closed: list[str] = []

    async def close(name: str) -> None:
        closed.append(name)

    # Closing touches neither the database nor the bus.
    runtime = Runtime("probe", ServiceSettings(), cast(Database, None), cast(Bus, None), asyncio.Event())
    runtime.close_on_stop(lambda: close("clients"), lambda: close("pool"))
    runtime.stop.set()  # a SIGTERM: calls in flight are still being answered, with their clients open
    await asyncio.sleep(0)
    assert closed == []
    assert runtime._background == []
    await runtime.close()  # what `serve` does once the server has drained
    assert closed == ["clients", "pool"]


def test_an_error_kind_takes_its_code_from_its_status_unless_named() -> None:
    assert (NotFound.status, NotFound.default_code) == (grpc.StatusCode.NOT_FOUND, "not_found")
    assert (Conflict.status, Conflict.default_code) == (grpc.StatusCode.ABORTED, "conflict")
    assert ResourceExhausted.default_code == "rate_limited"
    assert FailedPrecondition.default_code == DomainError.default_code == "failed_precondition"

    class Refused(FailedPrecondition):
        default_code = "refused"

    assert (Refused.status, Refused("no").code) == (grpc.StatusCode.FAILED_PRECONDITION, "refused")
