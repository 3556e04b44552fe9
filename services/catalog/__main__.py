"""`python -m services.catalog [serve|migrate]`"""

from __future__ import annotations

import logging
from pathlib import Path

from atelier.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from kit.grpc_server import GrpcServer
from kit.service import Runtime, ServiceDefinition, main
from services.catalog import seed
from services.catalog.models import metadata
from services.catalog.servicer import CatalogServicer
from services.catalog.settings import CatalogSettings

log = logging.getLogger(__name__)


async def load_seed(runtime: Runtime[CatalogSettings]) -> None:
    """Loads the seed configuration into an empty catalog (idempotent; replicas load it once)."""
    path = runtime.settings.catalog_seed_file
    document = seed.read_seed(Path(path))
    assert runtime.outbox is not None
    async with runtime.db.transaction() as session:
        loaded = await seed.load_seed(session, runtime.outbox, document)
    if loaded:
        log.info("catalog seeded", extra={"seed": str(path)})
        if runtime.relay is not None:
            runtime.relay.notify()


async def setup(runtime: Runtime[CatalogSettings], server: GrpcServer) -> None:
    await load_seed(runtime)
    servicer = CatalogServicer(runtime)
    catalog_pb2_grpc.add_CatalogServiceServicer_to_server(servicer, server.server)
    server.add(catalog_pb2.DESCRIPTOR.services_by_name["CatalogService"].full_name)


DEFINITION = ServiceDefinition("catalog", CatalogSettings, metadata, setup)

if __name__ == "__main__":
    main(DEFINITION)
