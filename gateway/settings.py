from __future__ import annotations

from pydantic import Field, SecretStr, field_validator, model_validator

from kit.settings import PLACEHOLDER_SECRET, Settings

# The development signing key: fine on a laptop, refused anywhere else (see `_refuse_placeholders`).
DEV_JWT_KEYS = f"dev:{PLACEHOLDER_SECRET}-dev-only-signing-key-0123456789"


class GatewaySettings(Settings):
    http_host: str = "0.0.0.0"
    http_port: int = 8000
    public_url: str = "http://127.0.0.1:8000"
    readiness_timeout_seconds: float = 1.0

    # Access-token signing keys, newest first: "kid1:secret1,kid2:secret2". The first signs; all
    # verify, so a new key is rolled out by prepending it and an old one retired after one token TTL.
    jwt_keys: SecretStr = SecretStr(DEV_JWT_KEYS)
    jwt_issuer: str = "atelier"
    jwt_audience: str = "atelier-api"
    access_token_ttl_seconds: int = Field(default=900, ge=30, le=3600)

    # Login rate limits (token buckets, per gateway replica): a burst, then one attempt per interval.
    login_ip_burst: int = Field(default=20, ge=1)
    login_ip_refill_seconds: float = Field(default=3.0, gt=0)
    login_account_burst: int = Field(default=5, ge=1)
    login_account_refill_seconds: float = Field(default=12.0, gt=0)
    # Other unauthenticated POSTs that send mail or create accounts, per IP.
    auth_ip_burst: int = Field(default=10, ge=1)
    auth_ip_refill_seconds: float = Field(default=6.0, gt=0)
    # Trust X-Forwarded-For from the ingress for the client IP (only behind a proxy that sets it).
    trust_forwarded_for: bool = False

    @field_validator("jwt_keys")
    @classmethod
    def _parse_keys(cls, value: SecretStr) -> SecretStr:
        parse_jwt_keys(value.get_secret_value())
        return value

    @model_validator(mode="after")
    def _refuse_placeholders(self) -> GatewaySettings:
        if self.environment != "development":
            for kid, secret in parse_jwt_keys(self.jwt_keys.get_secret_value()):
                if PLACEHOLDER_SECRET in secret or len(secret) < 32:
                    raise ValueError(
                        f"ATELIER_JWT_KEYS: key {kid!r} is a placeholder or shorter than 32 characters; "
                        "set real secrets outside development"
                    )
        return self

    def signing_keys(self) -> list[tuple[str, str]]:
        return parse_jwt_keys(self.jwt_keys.get_secret_value())


def parse_jwt_keys(raw: str) -> list[tuple[str, str]]:
    keys: list[tuple[str, str]] = []
    for part in raw.split(","):
        kid, sep, secret = part.strip().partition(":")
        if not sep or not kid or not secret:
            raise ValueError("ATELIER_JWT_KEYS must look like 'kid:secret[,kid:secret...]'")
        keys.append((kid, secret))
    if len({kid for kid, _ in keys}) != len(keys):
        raise ValueError("ATELIER_JWT_KEYS: key ids must be unique")
    return keys
