from __future__ import annotations

from kit.settings import ServiceSettings


class CatalogSettings(ServiceSettings):
    database_url: str = "postgresql://postgres@127.0.0.1:5432/atelier_catalog"
    grpc_port: int = 50052
