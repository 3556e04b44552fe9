"""gRPC transport for the catalog service: protobuf in, a domain call, protobuf out."""

from __future__ import annotations

from atelier.catalog.v1 import catalog_pb2_grpc
from kit.service import Runtime


class CatalogServicer(catalog_pb2_grpc.CatalogServiceServicer):
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
