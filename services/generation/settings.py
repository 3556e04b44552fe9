from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from kit.settings import PLACEHOLDER_SECRET, ServiceSettings


class GenerationSettings(ServiceSettings):
    database_url: str = "postgresql://postgres@127.0.0.1:5432/atelier_generation"
    grpc_port: int = 50054
    # Data folder of the embedded stack (ATELIER_HOME); a local blob store lives under it.
    home: Path = Path(".atelier")

    # -- blob store ------------------------------------------------------------------------------
    # An S3 bucket wherever the product runs (`make run` starts SeaweedFS and points here); "local" keeps
    # files in one process's folder, for unit tests only, and is refused in production.
    blob_backend: Literal["local", "s3"] = "s3"
    # Local backend only. Empty: `{home}/blobs`.
    blob_dir: Path | None = None
    # Where the gateway serves files; empty: `{public_url}/v1/files`.
    blob_url_base: str = ""
    public_url: str = "http://127.0.0.1:8000"
    blob_url_secret: str = PLACEHOLDER_SECRET
    blob_url_ttl_seconds: int = Field(default=3600, ge=60)
    # Empty: AWS's endpoint for the region.
    s3_endpoint: str = ""
    s3_bucket: str = ""
    s3_region: str = "us-east-1"
    # Both empty: botocore's default chain (AWS_* variables, web identity, instance role).
    s3_access_key: str = ""
    s3_secret_key: str = ""

    # -- submissions -----------------------------------------------------------------------------
    hold_ttl_seconds: int = Field(default=2 * 3600, ge=60)
    image_deadline_seconds: float = 600.0
    video_deadline_seconds: float = 1800.0
    text_deadline_seconds: float = 300.0

    # -- workers ---------------------------------------------------------------------------------
    job_ack_wait_seconds: float = Field(default=30.0, gt=0)
    job_max_deliver: int = Field(default=5, ge=1)
    image_concurrency: int = Field(default=4, ge=1)
    video_concurrency: int = Field(default=2, ge=1)
    text_concurrency: int = Field(default=4, ge=1)
    # In-flight upstream calls per channel code (default for channels not listed).
    channel_concurrency: int = Field(default=4, ge=1)
    channel_limits: dict[str, int] = Field(default_factory=dict)
    poll_interval_seconds: float = Field(default=2.0, gt=0)
    # In-process retries of a retryable upstream error before the task fails.
    upstream_retries: int = Field(default=3, ge=0)
    upstream_timeout_seconds: float = Field(default=60.0, gt=0)
    upstream_max_backoff_seconds: float = Field(default=30.0, gt=0)
    # API keys by a channel's `api_key_ref` (JSON in ATELIER_PROVIDER_KEYS); else the environment
    # variable of that name.
    provider_keys: dict[str, str] = Field(default_factory=dict)

    # -- the local provider ----------------------------------------------------------------------
    local_delay_seconds: float = Field(default=2.0, ge=0)
    local_failure_fraction: float = Field(default=0.0, ge=0, le=1)

    @model_validator(mode="after")
    def _real_secret_in_production(self) -> GenerationSettings:
        if self.environment == "production" and self.blob_url_secret == PLACEHOLDER_SECRET:
            raise ValueError("ATELIER_BLOB_URL_SECRET must be set in production")
        return self

    @model_validator(mode="after")
    def _shared_blob_store(self) -> GenerationSettings:
        if self.blob_backend == "local" and self.environment == "production":
            raise ValueError(
                "ATELIER_BLOB_BACKEND=local keeps files in one pod's folder, which the worker writes and "
                "generation reads from other pods: production needs ATELIER_BLOB_BACKEND=s3 and ATELIER_S3_*"
            )
        if self.blob_backend == "s3" and not self.s3_bucket:
            raise ValueError(
                "ATELIER_S3_BUCKET must be set (with ATELIER_S3_ENDPOINT and its keys, unless on AWS); "
                "`make run` starts SeaweedFS and sets them"
            )
        return self

    @property
    def blob_root(self) -> Path:
        return self.blob_dir or self.home / "blobs"
