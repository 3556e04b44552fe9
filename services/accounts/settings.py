from __future__ import annotations

from kit.settings import ServiceSettings


class AccountsSettings(ServiceSettings):
    database_url: str = "postgresql://postgres@127.0.0.1:5432/atelier_accounts"
    grpc_port: int = 50051
