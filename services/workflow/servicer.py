"""gRPC transport for the workflow service: protobuf in, a domain call, protobuf out."""

from __future__ import annotations

from atelier.workflow.v1 import workflow_pb2_grpc
from kit.service import Runtime


class WorkflowServicer(workflow_pb2_grpc.WorkflowServiceServicer):
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
