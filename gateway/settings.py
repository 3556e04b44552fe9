from __future__ import annotations

import ipaddress

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
    # The Ed25519 key that signs end-user tokens for the services (kit.user_tokens), PEM; services hold
    # its public half (`user_token_public_keys_file`). Only the gateway has it.
    user_token_signing_key_file: str = ""
    user_token_ttl_seconds: int = Field(default=60, ge=5, le=300)
    jwt_audience: str = "atelier-api"
    access_token_ttl_seconds: int = Field(default=900, ge=30, le=3600)
    # A session access token is checked against accounts (role, status, session still live) at most
    # this long ago on this replica: a demotion, a disable, a password reset or a sign-out takes effect
    # within this bound everywhere. Never more than 5 s; 0 asks on every request.
    session_check_ttl_seconds: float = Field(default=5.0, ge=0, le=5.0)

    # Rate limits (gateway/ratelimits.py; shared by every replica through NATS): a burst, then one
    # request per interval.
    login_ip_burst: int = Field(default=20, ge=1)
    login_ip_refill_seconds: float = Field(default=3.0, gt=0)
    login_account_burst: int = Field(default=5, ge=1)
    login_account_refill_seconds: float = Field(default=12.0, gt=0)
    # Other unauthenticated POSTs that send mail or create accounts, per IP.
    auth_ip_burst: int = Field(default=10, ge=1)
    auth_ip_refill_seconds: float = Field(default=6.0, gt=0)
    # Every authenticated request, per account (API keys and sessions alike): 50 a second sustained.
    api_account_burst: int = Field(default=600, ge=1)
    api_account_refill_seconds: float = Field(default=0.02, gt=0)
    # The client's address (login limits, sessions) is the TCP peer's, unless the gateway runs behind
    # proxies: then X-Forwarded-For is believed only on connections from `trusted_proxies` (addresses
    # or networks: "10.0.0.0/8,fd00::/8"), and the client is the entry `forwarded_for_hops` from the
    # right, the address our outermost proxy saw (1: one proxy, such as the Ingress controller).
    trust_forwarded_for: bool = False
    trusted_proxies: str = ""
    forwarded_for_hops: int = Field(default=1, ge=1, le=10)

    @field_validator("jwt_keys")
    @classmethod
    def _parse_keys(cls, value: SecretStr) -> SecretStr:
        parse_jwt_keys(value.get_secret_value())
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _parse_proxies(cls, value: str) -> str:
        parse_networks(value)
        return value

    @model_validator(mode="after")
    def _proxies_named(self) -> GatewaySettings:
        if self.trust_forwarded_for and not parse_networks(self.trusted_proxies):
            raise ValueError(
                "ATELIER_TRUST_FORWARDED_FOR needs ATELIER_TRUSTED_PROXIES: the addresses or networks "
                "of the proxies whose X-Forwarded-For may be believed"
            )
        return self

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

    def proxy_networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        """The proxies whose X-Forwarded-For is believed; none unless `trust_forwarded_for`."""
        return parse_networks(self.trusted_proxies) if self.trust_forwarded_for else []


def parse_networks(raw: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    networks = []
    for part in filter(None, (p.strip() for p in raw.split(","))):
        try:
            networks.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise ValueError(f"ATELIER_TRUSTED_PROXIES: {part!r} is not an address or network") from None
    return networks


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
