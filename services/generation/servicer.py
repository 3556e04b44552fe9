"""gRPC transport for the generation service: protobuf in, a domain call, protobuf out."""

from __future__ import annotations

from atelier.generation.v1 import generation_pb2_grpc
from kit.service import Runtime


class GenerationServicer(generation_pb2_grpc.GenerationServiceServicer):
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
