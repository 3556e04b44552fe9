"""gRPC transport for the ledger service: protobuf in, a domain call, protobuf out."""

from __future__ import annotations

from atelier.ledger.v1 import ledger_pb2_grpc
from kit.service import Runtime


class LedgerServicer(ledger_pb2_grpc.LedgerServiceServicer):
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
