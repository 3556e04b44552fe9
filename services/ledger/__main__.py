"""`python -m services.ledger [serve|migrate]`"""

from __future__ import annotations

from pathlib import Path

from atelier.ledger.v1 import ledger_pb2, ledger_pb2_grpc
from kit.grpc_server import GrpcServer
from kit.service import Runtime, ServiceDefinition, main
from services.ledger.models import metadata
from services.ledger.servicer import LedgerServicer
from services.ledger.settings import LedgerSettings


async def setup(runtime: Runtime, server: GrpcServer) -> None:
    # Until every RPC is built, the generated base class answers the rest with UNIMPLEMENTED.
    servicer = LedgerServicer(runtime)  # type: ignore[abstract]
    ledger_pb2_grpc.add_LedgerServiceServicer_to_server(servicer, server.server)
    server.add(ledger_pb2.DESCRIPTOR.services_by_name["LedgerService"].full_name)


DEFINITION = ServiceDefinition(
    name="ledger",
    settings_factory=LedgerSettings,
    metadata=metadata,
    migrations_dir=Path(__file__).parent / "migrations",
    setup=setup,
)

if __name__ == "__main__":
    main(DEFINITION)
