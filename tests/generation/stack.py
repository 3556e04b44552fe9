"""A generation stack per test: its own database and NATS namespace, fake catalog and ledger over
gRPC, the real servicer on a real port, the outbox relay, and (when asked) an in-process worker.

A pytest plugin (`pytest_plugins` in tests/conftest.py): its fixtures are registered once, for the
generation suite and the contract tests of tests/fakes (a suite with a `stack` of its own overrides it)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import cast

import pytest

from atelier.catalog.v1 import catalog_pb2
from atelier.events.v1 import events_pb2
from atelier.generation.v1 import generation_pb2_grpc
from devkit.embedded import EmbeddedSeaweed, S3Access, free_port
from kit.bus import Bus, Delivery
from kit.db import Database, drop_database, ensure_database, with_database
from kit.grpc_server import GrpcServer
from kit.identity import Identity
from kit.migrations import upgrade_async
from kit.outbox import Outbox, OutboxRelay
from kit.service import Runtime
from services.generation.blobs import Blobs, S3BlobStore
from services.generation.clients import Clients
from services.generation.conversations import Conversations
from services.generation.models import outbox as outbox_table
from services.generation.providers import ProviderRegistry
from services.generation.service import Generation
from services.generation.servicer import GenerationServicer
from services.generation.settings import GenerationSettings
from services.generation.worker import Worker
from tests import identities
from tests.fakes.catalog import FakeCatalog, FakeModel
from tests.fakes.ledger import FakeLedger
from tests.generation.fakes import start_fakes
from tests.generation.upstream import FakeUpstream
from tests.infra import Infra

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Stack:
    settings: GenerationSettings
    db: Database
    bus: Bus
    catalog: FakeCatalog
    ledger: FakeLedger
    stub: generation_pb2_grpc.GenerationServiceStub
    blobs: Blobs
    completed: list[events_pb2.TaskCompleted] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    background: list[asyncio.Task[None]] = field(default_factory=list)
    worker: Worker | None = None
    providers: ProviderRegistry | None = None
    generation_addr: str = ""

    def user(self, credits_milli: int = 0, *, verified: bool = True) -> Identity:
        user_id = f"u_{uuid.uuid4().hex[:10]}"
        self.ledger.posted[user_id] = credits_milli
        return Identity(user_id=user_id, status="active" if verified else "unverified")

    async def stored_keys(self) -> list[str]:
        """Every key in this stack's bucket."""
        client = await cast(S3BlobStore, self.blobs.store).client()
        listing = await client.list_objects_v2(Bucket=self.settings.s3_bucket)
        return sorted(item["Key"] for item in listing.get("Contents", []))

    def env(self) -> dict[str, str]:
        s = self.settings
        return {
            "ATELIER_DATABASE_URL": s.database_url,
            "ATELIER_NATS_URL": s.nats_url,
            "ATELIER_NAMESPACE": s.namespace,
            "ATELIER_GRPC_PORT": "0",
            "ATELIER_GRPC_HOST": "127.0.0.1",
            "ATELIER_MIGRATE_ON_START": "false",
            "ATELIER_BLOB_BACKEND": "s3",
            "ATELIER_S3_ENDPOINT": s.s3_endpoint,
            "ATELIER_S3_BUCKET": s.s3_bucket,
            "ATELIER_S3_ACCESS_KEY": s.s3_access_key,
            "ATELIER_S3_SECRET_KEY": s.s3_secret_key,
            "ATELIER_JOB_ACK_WAIT_SECONDS": str(s.job_ack_wait_seconds),
            "ATELIER_POLL_INTERVAL_SECONDS": str(s.poll_interval_seconds),
            "ATELIER_LOCAL_DELAY_SECONDS": str(s.local_delay_seconds),
            "ATELIER_LOG_LEVEL": "INFO",
            "ATELIER_SHUTDOWN_GRACE_SECONDS": "1",
        }

    async def start_worker(self) -> Worker:
        runtime = Runtime(
            "generation-worker", self.settings, self.db, self.bus, self.stop, Outbox(outbox_table)
        )
        worker = Worker(runtime, self.settings, self.blobs, ProviderRegistry(self.settings))
        for kind in ("image", "video", "text"):
            self.background.append(
                asyncio.create_task(
                    self.bus.consume(
                        durable=f"generation-worker-{kind}",
                        subject=f"jobs.{kind}",
                        handler=worker.handle,
                        stop=self.stop,
                        stream="JOBS",
                        max_deliver=self.settings.job_max_deliver,
                        ack_wait=self.settings.job_ack_wait_seconds,
                        concurrency=2,
                    )
                )
            )
        self.worker = worker
        return worker

    async def wait_completed(self, task_id: str, seconds: float = 20.0) -> events_pb2.TaskCompleted:
        for _ in range(int(seconds / 0.05)):
            for event in self.completed:
                if event.task_id == task_id:
                    return event
            await asyncio.sleep(0.05)
        raise AssertionError(f"no tasks.completed for {task_id}")


def metadata(identity: Identity, caller: str = "gateway") -> tuple[tuple[str, str], ...]:
    return (
        identities.user(identity)
        if caller == "gateway"
        else (*identities.user(identity), *identities.workload(caller))
    )


@pytest.fixture(scope="session")
def fake() -> Iterator[FakeUpstream]:
    """One fake upstream HTTP server for the run; tests reset it through `upstream`."""
    upstream = FakeUpstream()
    upstream.start()
    yield upstream
    upstream.stop()


@pytest.fixture
def upstream(fake: FakeUpstream) -> FakeUpstream:
    fake.calls.clear()
    fake.scripts.clear()
    fake.bodies.clear()
    fake.next_outcome = "ok"
    fake.operation_seconds = 0.3
    return fake


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Access]:
    """One real S3 server (SeaweedFS, as `make run` starts it) for the run; each test gets a bucket in it."""
    home = tmp_path_factory.mktemp("seaweed")
    server = EmbeddedSeaweed(home / "data", free_port(), home / "weed.log")
    yield server.start()
    server.stop(graceful=False)  # scratch data: no need to wait out its 15 s shutdown


@pytest.fixture
async def bucket(seaweed: S3Access) -> AsyncIterator[S3Access]:
    """A fresh bucket, removed with everything in it after the test."""
    access = replace(seaweed, bucket=f"t{uuid.uuid4().hex[:16]}")
    store = S3BlobStore(
        endpoint=access.endpoint,
        bucket=access.bucket,
        region=access.region,
        access_key=access.access_key,
        secret_key=access.secret_key,
    )
    client = await store.client()
    await client.create_bucket(Bucket=access.bucket)
    yield access
    await client.delete_bucket(Bucket=access.bucket)  # SeaweedFS deletes a bucket's objects with it
    await store.aclose()


@pytest.fixture
async def stack(infra: Infra, bucket: S3Access) -> AsyncIterator[Stack]:
    suffix = uuid.uuid4().hex[:6]
    url = with_database(
        infra.database_server, f"{infra.database_name('generation')}_{suffix}"
    ).render_as_string(hide_password=False)
    await ensure_database(url)
    await upgrade_async(ROOT / "services" / "generation" / "migrations", url)
    namespace = f"{infra.namespace}g{suffix}"
    bus = await Bus.connect(infra.nats_url, namespace=namespace, name="generation-tests")
    await bus.ensure_streams()
    # RPCs a fake leaves out answer UNIMPLEMENTED (the generated base); only its stub calls them abstract.
    catalog, ledger = FakeCatalog(), FakeLedger()  # type: ignore[abstract]
    catalog.models["img"] = FakeModel("img", "image", catalog_pb2.BILLING_UNIT_PER_IMAGE, 2000)
    catalog.models["vid"] = FakeModel("vid", "video", catalog_pb2.BILLING_UNIT_PER_SECOND, 1000)
    catalog.models["txt"] = FakeModel(
        "txt", "text", catalog_pb2.BILLING_UNIT_PER_1K_TOKENS, 0, input_per_1k=100, output_per_1k=400
    )
    fakes = await start_fakes(catalog, ledger)
    settings = GenerationSettings(
        database_url=url,
        nats_url=infra.nats_url,
        namespace=namespace,
        catalog_addr=f"127.0.0.1:{fakes.port}",
        ledger_addr=f"127.0.0.1:{fakes.port}",
        blob_backend="s3",
        s3_endpoint=bucket.endpoint,
        s3_bucket=bucket.bucket,
        s3_access_key=bucket.access_key,
        s3_secret_key=bucket.secret_key,
        blob_url_secret="test-secret",
        local_delay_seconds=0.0,
        job_ack_wait_seconds=2.0,
        poll_interval_seconds=0.1,
        upstream_max_backoff_seconds=2.0,
    )
    db = Database(url, application_name="atelier-generation-tests")
    outbox = Outbox(outbox_table)
    clients = Clients(settings)
    blobs = Blobs.from_settings(settings)
    providers = ProviderRegistry(settings)
    servicer = GenerationServicer(
        Generation(db, outbox, clients, blobs, settings),
        Conversations(db, outbox, clients, providers, settings),
        blobs,
    )
    server = GrpcServer("generation", host="127.0.0.1", port=0)
    generation_pb2_grpc.add_GenerationServiceServicer_to_server(servicer, server.server)
    port = await server.start()
    channel = identities.channel(f"127.0.0.1:{port}")
    stack = Stack(
        settings, db, bus, catalog, ledger, generation_pb2_grpc.GenerationServiceStub(channel), blobs
    )
    stack.providers = providers
    stack.generation_addr = f"127.0.0.1:{port}"
    relay = OutboxRelay(outbox_table, db, bus, service="generation", idle_interval=0.05)
    stack.background.append(asyncio.create_task(relay.run(stack.stop)))

    async def on_completed(delivery: Delivery) -> None:
        event = events_pb2.TaskCompleted.FromString(delivery.data)
        stack.ledger.settle(event)  # what the real ledger's consumer does
        stack.completed.append(event)

    stack.background.append(
        asyncio.create_task(
            bus.consume(
                durable="fake-ledger", subject="tasks.completed", handler=on_completed, stop=stack.stop
            )
        )
    )
    yield stack
    stack.stop.set()
    await asyncio.wait(stack.background, timeout=5)
    for task in stack.background:
        task.cancel()
    if stack.worker is not None:
        await stack.worker.aclose()
    await channel.close()
    await server.stop(0)
    await fakes.stop(0)
    await clients.close()
    await providers.aclose()
    await blobs.aclose()
    with contextlib.suppress(Exception):
        await bus.delete_streams()
    await bus.nc.close()  # not a drain: pull subscriptions would hold a drain for its 30 s timeout
    await db.dispose()
    await drop_database(url)
