from __future__ import annotations

from kit.settings import ServiceSettings


class GenerationSettings(ServiceSettings):
    database_url: str = "postgresql://postgres@127.0.0.1:5432/atelier_generation"
    grpc_port: int = 50054
