"""The shared catalog and ledger fakes (`tests/fakes/`) served together on one grpc.aio server, as the
generation service reaches them."""

from __future__ import annotations

from atelier.catalog.v1 import catalog_pb2_grpc
from atelier.ledger.v1 import ledger_pb2_grpc
from kit.grpc_server import GrpcServer
from tests.fakes.catalog import FakeCatalog
from tests.fakes.ledger import FakeLedger


async def start_fakes(catalog: FakeCatalog, ledger: FakeLedger) -> GrpcServer:
    server = GrpcServer("fakes", host="127.0.0.1", port=0)
    catalog_pb2_grpc.add_CatalogServiceServicer_to_server(catalog, server.server)
    ledger_pb2_grpc.add_LedgerServiceServicer_to_server(ledger, server.server)
    await server.start()
    return server
