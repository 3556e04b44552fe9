"""`python -m services.workflow [serve|migrate]`"""

from __future__ import annotations

from pathlib import Path

from atelier.workflow.v1 import workflow_pb2, workflow_pb2_grpc
from kit.grpc_server import GrpcServer
from kit.service import Runtime, ServiceDefinition, main
from services.workflow.models import metadata
from services.workflow.servicer import WorkflowServicer
from services.workflow.settings import WorkflowSettings


async def setup(runtime: Runtime, server: GrpcServer) -> None:
    # Until every RPC is built, the generated base class answers the rest with UNIMPLEMENTED.
    servicer = WorkflowServicer(runtime)  # type: ignore[abstract]
    workflow_pb2_grpc.add_WorkflowServiceServicer_to_server(servicer, server.server)
    server.add(workflow_pb2.DESCRIPTOR.services_by_name["WorkflowService"].full_name)


DEFINITION = ServiceDefinition(
    name="workflow",
    settings_factory=WorkflowSettings,
    metadata=metadata,
    migrations_dir=Path(__file__).parent / "migrations",
    setup=setup,
)

if __name__ == "__main__":
    main(DEFINITION)
