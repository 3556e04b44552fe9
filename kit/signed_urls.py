"""Expiring signed URLs: an HMAC-SHA256 over the path and the expiry, with a shared secret.

The service that stores a file signs its URL; whoever serves the file (the gateway) verifies it
without a database lookup.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from urllib.parse import quote


def signature(path: str, expires: int, secret: str) -> str:
    message = f"{path}\n{expires}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def sign(
    base_url: str, path: str, *, secret: str, ttl_seconds: int, now: float | None = None
) -> tuple[str, int]:
    """`(url, expires)`: `{base_url}/{path}?expires=..&signature=..`."""
    expires = int((now if now is not None else time.time()) + ttl_seconds)
    url = (
        f"{base_url.rstrip('/')}/{quote(path)}?expires={expires}&signature={signature(path, expires, secret)}"
    )
    return url, expires


def verify(path: str, expires: int, given: str, *, secret: str, now: float | None = None) -> bool:
    """True when `given` signs `path` until `expires` and that moment has not passed."""
    if expires < (now if now is not None else time.time()):
        return False
    return hmac.compare_digest(signature(path, expires, secret), given)
