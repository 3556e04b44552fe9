"""`python -m services.generation [serve|migrate]`"""

from __future__ import annotations

from atelier.generation.v1 import generation_pb2, generation_pb2_grpc
from kit.grpc_server import GrpcServer
from kit.service import Runtime, ServiceDefinition, main
from services.generation.blobs import Blobs
from services.generation.clients import Clients
from services.generation.conversations import Conversations
from services.generation.models import metadata
from services.generation.providers import ProviderRegistry
from services.generation.service import Generation
from services.generation.servicer import GenerationServicer
from services.generation.settings import GenerationSettings


async def setup(runtime: Runtime[GenerationSettings], server: GrpcServer) -> None:
    settings = runtime.settings
    assert runtime.outbox is not None
    clients = Clients(settings)
    blobs = Blobs.from_settings(settings)
    providers = ProviderRegistry(settings)
    generation = Generation(runtime.db, runtime.outbox, clients, blobs, settings)
    conversations = Conversations(runtime.db, runtime.outbox, clients, providers, settings)
    servicer = GenerationServicer(generation, conversations, blobs)
    generation_pb2_grpc.add_GenerationServiceServicer_to_server(servicer, server.server)
    server.add(generation_pb2.DESCRIPTOR.services_by_name["GenerationService"].full_name)
    runtime.close_on_stop(clients.close, providers.aclose, blobs.aclose)


DEFINITION = ServiceDefinition("generation", GenerationSettings, metadata, setup)

if __name__ == "__main__":
    main(DEFINITION)
