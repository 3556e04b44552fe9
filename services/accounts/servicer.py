"""gRPC transport for the accounts service: protobuf in, a domain call, protobuf out."""

from __future__ import annotations

from atelier.accounts.v1 import accounts_pb2_grpc
from kit.service import Runtime


class AccountsServicer(accounts_pb2_grpc.AccountsServiceServicer):
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
