"""`python -m services.generation [serve|migrate]`"""

from __future__ import annotations

from pathlib import Path

from atelier.generation.v1 import generation_pb2, generation_pb2_grpc
from kit.grpc_server import GrpcServer
from kit.service import Runtime, ServiceDefinition, main
from services.generation.models import metadata
from services.generation.servicer import GenerationServicer
from services.generation.settings import GenerationSettings


async def setup(runtime: Runtime, server: GrpcServer) -> None:
    # Until every RPC is built, the generated base class answers the rest with UNIMPLEMENTED.
    servicer = GenerationServicer(runtime)  # type: ignore[abstract]
    generation_pb2_grpc.add_GenerationServiceServicer_to_server(servicer, server.server)
    server.add(generation_pb2.DESCRIPTOR.services_by_name["GenerationService"].full_name)


DEFINITION = ServiceDefinition(
    name="generation",
    settings_factory=GenerationSettings,
    metadata=metadata,
    migrations_dir=Path(__file__).parent / "migrations",
    setup=setup,
)

if __name__ == "__main__":
    main(DEFINITION)
