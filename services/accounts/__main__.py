"""`python -m services.accounts [serve|migrate]`"""

from __future__ import annotations

from pathlib import Path

from atelier.accounts.v1 import accounts_pb2, accounts_pb2_grpc
from kit.grpc_server import GrpcServer
from kit.service import Runtime, ServiceDefinition, main
from services.accounts.models import metadata
from services.accounts.servicer import AccountsServicer
from services.accounts.settings import AccountsSettings


async def setup(runtime: Runtime, server: GrpcServer) -> None:
    # Until every RPC is built, the generated base class answers the rest with UNIMPLEMENTED.
    servicer = AccountsServicer(runtime)  # type: ignore[abstract]
    accounts_pb2_grpc.add_AccountsServiceServicer_to_server(servicer, server.server)
    server.add(accounts_pb2.DESCRIPTOR.services_by_name["AccountsService"].full_name)


DEFINITION = ServiceDefinition(
    name="accounts",
    settings_factory=AccountsSettings,
    metadata=metadata,
    migrations_dir=Path(__file__).parent / "migrations",
    setup=setup,
)

if __name__ == "__main__":
    main(DEFINITION)
