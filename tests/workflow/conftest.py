"""Fixtures of the workflow tests: a fresh database and NATS namespace per test, the fakes of the
services the workflow calls, and the workflow service itself (in-process, or as a real process)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import json_format, struct_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from atelier.workflow.v1 import workflow_pb2, workflow_pb2_grpc
from devkit.embedded import free_port
from kit.bus import Bus
from kit.db import Database, drop_database, ensure_database, with_database
from kit.grpc_server import GrpcServer
from kit.identity import Identity
from kit.migrations import upgrade_async
from kit.outbox import Outbox, OutboxRelay
from kit.service import Runtime
from services.workflow.__main__ import setup
from services.workflow.models import metadata
from services.workflow.settings import WorkflowSettings
from tests import identities
from tests.infra import Infra
from tests.workflow.fakes import Fakes, start_fakes

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def namespace(infra: Infra) -> str:
    return f"{infra.namespace}w{uuid.uuid4().hex[:6]}"


@pytest.fixture
async def wf_bus(infra: Infra, namespace: str) -> AsyncIterator[Bus]:
    bus = await Bus.connect(infra.nats_url, namespace=namespace, name="workflow-tests")
    await bus.ensure_streams()
    yield bus
    with contextlib.suppress(Exception):
        await bus.delete_streams()
    await bus.close()


@pytest.fixture
async def db_url(infra: Infra) -> AsyncIterator[str]:
    url = with_database(
        infra.database_server, f"{infra.database_name('workflow')}_{uuid.uuid4().hex[:6]}"
    ).render_as_string(hide_password=False)
    await ensure_database(url)
    await upgrade_async(ROOT / "services" / "workflow" / "migrations", url)
    yield url
    await drop_database(url)


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    database = Database(db_url, application_name="workflow-tests")
    yield database
    await database.dispose()


@pytest.fixture
async def fakes(wf_bus: Bus) -> AsyncIterator[Fakes]:
    made = await start_fakes(wf_bus)
    yield made
    made.ledger.debit_gate.release.set()
    made.ledger.refund_gate.release.set()
    made.generation.submit_gate.release.set()
    await made.server.stop(0)


def user(user_id: str | None = None) -> Identity:
    return Identity(user_id=user_id or f"u_{uuid.uuid4().hex[:8]}", status="active")


def struct(values: dict[str, Any]) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    message.update(values)
    return message


@dataclass
class Client:
    """The workflow's gRPC API, called as a given user."""

    stub: workflow_pb2_grpc.WorkflowServiceStub

    async def start(
        self, who: Identity, template: str, inputs: dict[str, Any], key: str | None = None
    ) -> workflow_pb2.StartRunResponse:
        request = workflow_pb2.StartRunRequest(
            idempotency_key=key or uuid.uuid4().hex, template_code=template, inputs=struct(inputs)
        )
        reply: workflow_pb2.StartRunResponse = await self.stub.StartRun(
            request, metadata=identities.user(who)
        )
        return reply

    async def get(self, who: Identity, run_id: str) -> workflow_pb2.Run:
        reply: workflow_pb2.GetRunResponse = await self.stub.GetRun(
            workflow_pb2.GetRunRequest(run_id=run_id), metadata=identities.user(who)
        )
        return reply.run

    async def cancel(self, who: Identity, run_id: str) -> workflow_pb2.Run:
        reply: workflow_pb2.CancelRunResponse = await self.stub.CancelRun(
            workflow_pb2.CancelRunRequest(run_id=run_id), metadata=identities.user(who)
        )
        return reply.run

    async def wait(
        self,
        who: Identity,
        run_id: str,
        predicate: Callable[[workflow_pb2.Run], bool],
        within: float = 15.0,
    ) -> workflow_pb2.Run:
        deadline = asyncio.get_running_loop().time() + within
        while True:
            try:
                run = await self.get(who, run_id)
                if predicate(run):
                    return run
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.UNAVAILABLE:
                    raise
                run = None
            if asyncio.get_running_loop().time() > deadline:
                shown = json_format.MessageToDict(run) if run else None
                raise AssertionError(f"run {run_id} never reached the expected state: {shown}")
            await asyncio.sleep(0.05)


def settled(run: workflow_pb2.Run) -> bool:
    """Final, and for a failed or canceled run its refund written (or none due on a free template)."""
    if run.status == workflow_pb2.RUN_STATUS_SUCCEEDED:
        return True
    if run.status in (workflow_pb2.RUN_STATUS_FAILED, workflow_pb2.RUN_STATUS_CANCELED):
        return bool(run.refund_transfer_id) or run.price.milli == 0
    return False


def settings_for(db_url: str, bus: Bus, fakes: Fakes, **overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "database_url": db_url,
        "nats_url": bus.nc.connected_url.geturl() if bus.nc.connected_url else "nats://127.0.0.1:4222",
        "namespace": bus.namespace,
        "grpc_host": "127.0.0.1",
        "resume_interval_seconds": 0.3,
        "debit_stale_seconds": 0.5,
        "create_database": False,
        "migrate_on_start": False,
        "log_level": "WARNING",
        **fakes.env(),
    }
    values.update(overrides)
    return values


@dataclass
class InProcess:
    """The workflow service wired exactly as `python -m services.workflow` wires it."""

    runtime: Runtime
    server: GrpcServer
    port: int
    channel: grpc.aio.Channel
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def client(self) -> Client:
        return Client(workflow_pb2_grpc.WorkflowServiceStub(self.channel))

    async def stop(self) -> None:
        self.runtime.stop.set()
        await self.server.stop(0)
        await asyncio.wait(self.tasks, timeout=5)
        for task in self.tasks:
            task.cancel()
        await self.channel.close()
        await self.runtime.bus.close()
        await self.runtime.db.dispose()


StartService = Callable[..., Awaitable[InProcess]]


@pytest.fixture
async def start_service(db_url: str, wf_bus: Bus, fakes: Fakes, infra: Infra) -> AsyncIterator[StartService]:
    started: list[InProcess] = []

    async def start(**overrides: Any) -> InProcess:
        settings = WorkflowSettings(
            **settings_for(db_url, wf_bus, fakes, nats_url=infra.nats_url, grpc_port=0)
        )
        for key, value in overrides.items():
            setattr(settings, key, value)
        db = Database(settings.database_url, application_name="atelier-workflow")
        bus = await Bus.connect(settings.nats_url, namespace=settings.namespace, name="atelier-workflow")
        runtime = Runtime("workflow", settings, db, bus, asyncio.Event())
        runtime.outbox = Outbox(metadata.tables["outbox"])
        runtime.relay = OutboxRelay(metadata.tables["outbox"], db, bus, service="workflow")
        runtime.spawn(runtime.relay.run(runtime.stop))
        server = GrpcServer("workflow", host="127.0.0.1", port=0)
        await setup(runtime, server)
        port = await server.start()
        service = InProcess(runtime, server, port, identities.channel(f"127.0.0.1:{port}"))
        service.tasks = [asyncio.create_task(c) for c in runtime._background]
        started.append(service)
        return service

    yield start
    for service in started:
        await service.stop()


@dataclass
class Process:
    """The workflow service as a real OS process (`python -m services.workflow`), for kill -9."""

    env: dict[str, str]
    port: int
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    async def start(self) -> None:
        assert self.log_path is not None
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(  # noqa: ASYNC220 - returns at once; the child runs on its own
            [sys.executable, "-m", "services.workflow"], env=self.env, cwd=ROOT, stdout=log, stderr=log
        )
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{self.port}")
        try:
            for _ in range(300):
                if self.proc.poll() is not None:
                    raise AssertionError(f"workflow exited: {self.log_path.read_text()[-3000:]}")
                try:
                    reply = await health_pb2_grpc.HealthStub(channel).Check(
                        health_pb2.HealthCheckRequest(service=""), timeout=0.5
                    )
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.aio.AioRpcError:
                    pass
                await asyncio.sleep(0.05)
            raise AssertionError("workflow did not become healthy")
        finally:
            await channel.close()

    def kill(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def terminate(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


@pytest.fixture
async def process(
    db_url: str, wf_bus: Bus, fakes: Fakes, infra: Infra, tmp_path: Path
) -> AsyncIterator[tuple[Process, Client]]:
    port = free_port()
    values = settings_for(db_url, wf_bus, fakes, nats_url=infra.nats_url, grpc_port=port, log_json=False)
    env = {**os.environ, **{f"ATELIER_{key.upper()}": str(value) for key, value in values.items()}}
    env["ATELIER_ENVIRONMENT"] = "test"
    service = Process(env=env, port=port, log_path=tmp_path / "workflow.log")
    channel = identities.channel(f"127.0.0.1:{port}")
    yield service, Client(workflow_pb2_grpc.WorkflowServiceStub(channel))
    service.terminate()
    await channel.close()
