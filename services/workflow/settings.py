from __future__ import annotations

from kit.settings import ServiceSettings


class WorkflowSettings(ServiceSettings):
    database_url: str = "postgresql://postgres@127.0.0.1:5432/atelier_workflow"
    grpc_port: int = 50055
