"""`python -m services.catalog [serve|migrate]`"""

from __future__ import annotations

from pathlib import Path

from atelier.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from kit.grpc_server import GrpcServer
from kit.service import Runtime, ServiceDefinition, main
from services.catalog.models import metadata
from services.catalog.servicer import CatalogServicer
from services.catalog.settings import CatalogSettings


async def setup(runtime: Runtime, server: GrpcServer) -> None:
    # Until every RPC is built, the generated base class answers the rest with UNIMPLEMENTED.
    servicer = CatalogServicer(runtime)  # type: ignore[abstract]
    catalog_pb2_grpc.add_CatalogServiceServicer_to_server(servicer, server.server)
    server.add(catalog_pb2.DESCRIPTOR.services_by_name["CatalogService"].full_name)


DEFINITION = ServiceDefinition(
    name="catalog",
    settings_factory=CatalogSettings,
    metadata=metadata,
    migrations_dir=Path(__file__).parent / "migrations",
    setup=setup,
)

if __name__ == "__main__":
    main(DEFINITION)
