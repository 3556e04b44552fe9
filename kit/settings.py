"""Process settings (pydantic-settings): one object per process, read from ATELIER_* variables."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PLACEHOLDER_SECRET = "change-me"


class Settings(BaseSettings):
    """Settings every Atelier process shares."""

    model_config = SettingsConfigDict(env_prefix="ATELIER_", extra="ignore", env_file=None)

    environment: Literal["development", "test", "production"] = "development"
    version: str = "0.1.0"
    nats_url: str = "nats://127.0.0.1:4222"
    # Prefix for NATS subjects and stream names so that several stacks (test runs) share one server.
    namespace: str = ""
    # Replicas a JetStream stream is created with (3 on a three-node cluster). A starting service never
    # lowers a running stream's count (kit/bus.py `ensure_streams`).
    nats_stream_replicas: int = Field(default=1, ge=1, le=5)
    log_level: str = "INFO"
    log_json: bool = True
    otel_exporter: Literal["none", "console", "otlp", "memory"] = "none"
    otel_endpoint: str | None = None
    tracing_ui_url: str = "http://localhost:16686/trace/{trace_id}"
    metrics_port: int = 0
    # The largest upload, shared by the gateway (which stops reading any request body past it) and
    # generation (which stores uploads). The Ingress body-size annotation in deploy/k8s matches it.
    upload_max_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)

    # Where each peer service answers gRPC; the defaults are the well-known ports of a one-host run
    # (Kubernetes uses DNS names). Adding a service means adding its `<name>_addr` here.
    # mTLS between workloads (kit.tls, kit.access): the directory holding this workload's `ca.crt`,
    # `tls.crt` and `tls.key` (a cert-manager Secret's layout). Empty: plaintext, where a caller's workload
    # is only its claim — development and tests only; production refuses to start without it.
    grpc_tls_dir: str = ""
    # The gateway's Ed25519 public key(s) for end-user tokens (kit.user_tokens), PEM; empty: none verified.
    user_token_public_keys_file: str = ""

    accounts_addr: str = "127.0.0.1:50051"
    catalog_addr: str = "127.0.0.1:50052"
    ledger_addr: str = "127.0.0.1:50053"
    generation_addr: str = "127.0.0.1:50054"
    workflow_addr: str = "127.0.0.1:50055"

    @model_validator(mode="after")
    def _production_is_mutual_tls(self) -> Settings:
        if self.environment == "production" and not (self.grpc_tls_dir and self.user_token_public_keys_file):
            raise ValueError("production needs ATELIER_GRPC_TLS_DIR and ATELIER_USER_TOKEN_PUBLIC_KEYS_FILE")
        return self

    def service_addr(self, service: str) -> str:
        addr: str = getattr(self, f"{service}_addr")
        return addr


# The services, named once by the address fields above (in their port order).
SERVICES = tuple(name.removesuffix("_addr") for name in Settings.model_fields if name.endswith("_addr"))


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
    # Servers close each client connection after about this long (plus a grace for calls in flight), so
    # clients re-resolve and spread over replicas that started after them.
    grpc_max_connection_age_seconds: float = Field(default=300.0, gt=0)
    # With TLS on, the health service alone, in plaintext, for probes without a certificate (0: none).
    grpc_health_port: int = 0
