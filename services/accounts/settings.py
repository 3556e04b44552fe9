from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator

from kit.settings import ServiceSettings


class AccountsSettings(ServiceSettings):
    database_url: str = "postgresql://postgres@127.0.0.1:5432/atelier_accounts"
    grpc_port: int = 50051

    # Where links in emails point (the public web/API origin).
    public_url: str = "http://127.0.0.1:8000"
    # The console page that verifies (it calls POST /v1/auth/verify-email); the API also accepts
    # GET /v1/auth/verify-email/{token} for clients without the console.
    verify_url_template: str = "{public_url}/verify-email/{token}"
    reset_url_template: str = "{public_url}/reset-password/{token}"
    home: Path = Path(".atelier")

    # Tokens and sessions.
    email_token_ttl_seconds: int = Field(default=24 * 3600, ge=60)
    email_resend_cooldown_seconds: int = Field(default=60, ge=0)
    refresh_ttl_seconds: int = Field(default=30 * 24 * 3600, ge=60)

    # argon2id cost (RFC 9106 "low memory" profile by default); tests lower it for speed.
    argon2_time_cost: int = Field(default=3, ge=1)
    argon2_memory_kib: int = Field(default=64 * 1024, ge=1024)
    argon2_parallelism: int = Field(default=4, ge=1)
    # Hashes and verifies in flight at once (each holds argon2_memory_kib); the rest queue. Unset: as
    # many as fit in credentials.HASHING_MEMORY_BUDGET_KIB (256 MiB: 4 at the default cost), which keeps
    # the pod under its 512Mi limit (docs/operations.md, "Capacity").
    argon2_max_concurrent: int | None = Field(default=None, ge=1)

    # The first admin, ensured at every start when both are set (the launcher sets dev defaults).
    admin_email: str = ""
    admin_password: SecretStr = SecretStr("")

    # Mail: "outbox" writes .eml files under mail_dir (development); "smtp" delivers for real.
    mail_backend: Literal["outbox", "smtp"] = "outbox"
    mail_dir: Path | None = None
    mail_from: str = "Atelier <no-reply@atelier.local>"
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 587
    smtp_starttls: bool = True
    smtp_ssl: bool = False
    smtp_username: str = ""
    smtp_password: SecretStr = SecretStr("")
    smtp_timeout_seconds: float = 10.0

    @model_validator(mode="after")
    def _production_mail(self) -> AccountsSettings:
        if self.environment == "production" and self.mail_backend != "smtp":
            raise ValueError("ATELIER_MAIL_BACKEND must be 'smtp' in production")
        return self

    @property
    def outbox_dir(self) -> Path:
        return self.mail_dir or self.home / "mail"

    def verify_url(self, token: str) -> str:
        return self.verify_url_template.format(public_url=self.public_url.rstrip("/"), token=token)

    def reset_url(self, token: str) -> str:
        return self.reset_url_template.format(public_url=self.public_url.rstrip("/"), token=token)
