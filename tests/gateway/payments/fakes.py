"""In-test stand-ins reached over the real wire: a ledger and a catalog served by `grpc.aio` (with the
shared error interceptor), and fake provider APIs served over real HTTP by uvicorn."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import uvicorn
from google.protobuf.timestamp_pb2 import Timestamp
from starlette.applications import Starlette

from atelier.accounts.v1 import accounts_pb2_grpc
from atelier.catalog.v1 import catalog_pb2_grpc
from atelier.ledger.v1 import ledger_pb2_grpc
from tests.fakes.accounts import FakeAccounts
from tests.fakes.catalog import FakeCatalog
from tests.fakes.ledger import FakeLedger
from tests.fakes.serve import serve


def _now_pb(delta: timedelta = timedelta()) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(datetime.now(UTC) + delta)
    return stamp


@asynccontextmanager
async def serve_fakes(ledger: FakeLedger, catalog: FakeCatalog | None = None) -> AsyncIterator[str]:
    """Serve the fakes on a free port over real gRPC; yields the address."""
    # RPCs a fake leaves out answer UNIMPLEMENTED (the generated base); only its stub calls them abstract.
    catalog = catalog or FakeCatalog(version=7)  # type: ignore[abstract]
    accounts = FakeAccounts()  # type: ignore[abstract]
    async with serve(
        "fakes",
        (ledger_pb2_grpc.add_LedgerServiceServicer_to_server, ledger),
        (catalog_pb2_grpc.add_CatalogServiceServicer_to_server, catalog),
        (accounts_pb2_grpc.add_AccountsServiceServicer_to_server, accounts),
    ) as address:
        yield address


@asynccontextmanager
async def serve_http(app: Starlette) -> AsyncIterator[str]:
    """Serve an ASGI app over real HTTP on a free port; yields its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        sock.close()
