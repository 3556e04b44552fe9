"""The end user's context between services: a short-lived token the gateway signs and services verify.

The gateway mints one per request for the signed-in user (`UserTokenSigner.metadata`); services forward
it on that request's synchronous hops (`kit.grpc_client` does it for the call being served); every
service verifies it (`kit.access`) before acting for a user. Only the gateway holds the signing key, so a
compromised service can replay a token it was handed for at most `TTL_SECONDS` and for that user only, and
cannot make one. Work that events start later carries no token: it acts as its own workload under
`kit.access.ACCESS`.

Ed25519 (EdDSA JWT): the public keys every service holds verify but cannot sign. The public-key file may
hold several keys; a key is rolled out by adding its public half everywhere first, then switching the
gateway's signing key, then removing the old public half after a TTL. A token signed by a key not yet
seen makes the verifier re-read its file (at most once a second).
"""

from __future__ import annotations

import base64
import hashlib
import threading
import time
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from kit.errors import Unauthenticated
from kit.identity import ROLES, STATUSES, Identity

HEADER = "x-atelier-user"
ISSUER = "atelier-gateway"
AUDIENCE = "atelier-services"
TTL_SECONDS = 60
_LEEWAY_SECONDS = 5


def key_id(public: ed25519.Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.urlsafe_b64encode(hashlib.sha256(raw).digest()[:9]).decode()


def _signing_key(path: Path) -> ed25519.Ed25519PrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise ValueError(f"{path}: the user-token signing key must be Ed25519")
    return key


class UserTokenSigner:
    """Mints tokens. Made `from_file`, it follows the file: a replaced key signs from the next token on
    (looked at at most every `RELOAD_SECONDS`), so step two of a rotation needs no restart."""

    RELOAD_SECONDS = 5.0

    def __init__(
        self, key: ed25519.Ed25519PrivateKey, *, ttl: int = TTL_SECONDS, path: Path | None = None
    ) -> None:
        self._key = key
        self.kid = key_id(key.public_key())
        self.ttl = ttl
        self._path = path
        self._stamp = path.stat().st_mtime_ns if path is not None else 0
        self._checked = time.monotonic()

    @classmethod
    def from_file(cls, path: str | Path, *, ttl: int = TTL_SECONDS) -> UserTokenSigner:
        return cls(_signing_key(Path(path)), ttl=ttl, path=Path(path))

    def _follow_file(self) -> None:
        if self._path is None or time.monotonic() - self._checked < self.RELOAD_SECONDS:
            return
        self._checked = time.monotonic()
        try:
            stamp = self._path.stat().st_mtime_ns
            if stamp != self._stamp:
                self._key, self._stamp = _signing_key(self._path), stamp
                self.kid = key_id(self._key.public_key())
        except (OSError, ValueError):
            return  # mid-replacement: keep signing with the key we have, look again later

    def mint(self, identity: Identity, *, audience: str = AUDIENCE, now: float | None = None) -> str:
        self._follow_file()
        issued = int(now if now is not None else time.time())
        claims = {
            "sub": identity.user_id,
            "role": identity.role,
            "status": identity.status,
            "iss": ISSUER,
            "aud": audience,
            "iat": issued,
            "exp": issued + self.ttl,
        }
        return jwt.encode(claims, self._key, algorithm="EdDSA", headers={"kid": self.kid})

    def metadata(self, identity: Identity) -> tuple[tuple[str, str], ...]:
        return ((HEADER, self.mint(identity)),)


class UserTokenVerifier:
    """Verifies tokens against the public keys in one PEM file, re-read when a token names a new key."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._keys = self._load()
        self._loaded_at = time.monotonic()

    def _load(self) -> dict[str, ed25519.Ed25519PublicKey]:
        keys: dict[str, ed25519.Ed25519PublicKey] = {}
        for block in self.path.read_text().split("-----END PUBLIC KEY-----"):
            if "-----BEGIN PUBLIC KEY-----" not in block:
                continue
            key = serialization.load_pem_public_key((block.strip() + "\n-----END PUBLIC KEY-----\n").encode())
            if isinstance(key, ed25519.Ed25519PublicKey):
                keys[key_id(key)] = key
        if not keys:
            raise ValueError(f"{self.path}: no Ed25519 public key")
        return keys

    def _key(self, kid: str) -> ed25519.Ed25519PublicKey | None:
        key = self._keys.get(kid)
        if key is None:
            with self._lock:
                if time.monotonic() - self._loaded_at >= 1.0:
                    self._loaded_at = time.monotonic()
                    try:
                        self._keys = self._load()
                    except (OSError, ValueError):
                        pass
                key = self._keys.get(kid)
        return key

    def verify(self, token: str) -> Identity:
        """The identity the token carries; `Unauthenticated` (code `invalid_user_token`) otherwise."""
        try:
            kid = jwt.get_unverified_header(token).get("kid", "")
            key = self._key(str(kid))
            if key is None:
                raise jwt.InvalidTokenError("unknown key id")
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=["EdDSA"],
                audience=AUDIENCE,
                issuer=ISSUER,
                leeway=_LEEWAY_SECONDS,
                options={"require": ["sub", "exp", "iat", "aud", "iss"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise Unauthenticated("the user token has expired", code="user_token_expired") from exc
        except jwt.InvalidTokenError as exc:
            raise Unauthenticated("the user token is not valid", code="invalid_user_token") from exc
        role, status = claims.get("role"), claims.get("status")
        if role not in ROLES or status not in STATUSES or not isinstance(claims["sub"], str):
            raise Unauthenticated("the user token is not valid", code="invalid_user_token")
        return Identity(user_id=claims["sub"], role=role, status=status)
