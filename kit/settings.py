"""Process settings (pydantic-settings): one object per process, read from ATELIER_* variables."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

# Well-known gRPC ports of the services on one host (the launcher's defaults; Kubernetes uses DNS).
DEFAULT_PORTS = {
    "accounts": 50051,
    "catalog": 50052,
    "ledger": 50053,
    "generation": 50054,
    "workflow": 50055,
}
SERVICES = tuple(DEFAULT_PORTS)

PLACEHOLDER_SECRET = "change-me"


class Settings(BaseSettings):
    """Settings every Atelier process shares."""

    model_config = SettingsConfigDict(env_prefix="ATELIER_", extra="ignore", env_file=None)

    environment: Literal["development", "test", "production"] = "development"
    version: str = "0.1.0"
    nats_url: str = "nats://127.0.0.1:4222"
    # Prefix for NATS subjects and stream names so that several stacks (test runs) share one server.
    namespace: str = ""
    log_level: str = "INFO"
    log_json: bool = True
    otel_exporter: Literal["none", "console", "otlp", "memory"] = "none"
    otel_endpoint: str | None = None
    tracing_ui_url: str = "http://localhost:16686/trace/{trace_id}"
    metrics_port: int = 0
    # The largest upload, shared by the gateway (which stops reading any request body past it) and
    # generation (which stores uploads). The Ingress body-size annotation in deploy/k8s matches it.
    upload_max_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)

    accounts_addr: str = f"127.0.0.1:{DEFAULT_PORTS['accounts']}"
    catalog_addr: str = f"127.0.0.1:{DEFAULT_PORTS['catalog']}"
    ledger_addr: str = f"127.0.0.1:{DEFAULT_PORTS['ledger']}"
    generation_addr: str = f"127.0.0.1:{DEFAULT_PORTS['generation']}"
    workflow_addr: str = f"127.0.0.1:{DEFAULT_PORTS['workflow']}"

    def service_addr(self, service: str) -> str:
        addr: str = getattr(self, f"{service}_addr")
        return addr


class ServiceSettings(Settings):
    """Settings of a gRPC service process: its own database and port."""

    database_url: str = "postgresql://postgres@127.0.0.1:5432/atelier"
    db_pool_size: int = Field(default=5, ge=1)
    db_max_overflow: int = Field(default=10, ge=0)
    grpc_host: str = "0.0.0.0"
    grpc_port: int = 0
    # Development conveniences; production runs migrations as their own step (a Kubernetes Job).
    create_database: bool = True
    migrate_on_start: bool = True
    shutdown_grace_seconds: float = 10.0
