"""`python -m services.generation.worker`: the generation worker process.

It shares the generation service's database and pulls jobs from JetStream (`jobs.<kind>`); it serves
only the gRPC health service, for its probes.
"""

from __future__ import annotations

from pathlib import Path

from kit.grpc_server import GrpcServer
from kit.service import Runtime, ServiceDefinition, main
from services.generation.models import metadata
from services.generation.settings import GenerationSettings


async def setup(runtime: Runtime, server: GrpcServer) -> None:
    """Job consumers are registered here by the generation issue's worker loop."""


DEFINITION = ServiceDefinition(
    name="generation-worker",
    settings_factory=GenerationSettings,
    metadata=metadata,
    migrations_dir=Path(__file__).parent / "migrations",
    setup=setup,
)

if __name__ == "__main__":
    main(DEFINITION)
