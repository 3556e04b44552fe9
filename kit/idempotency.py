"""The replay check every idempotent write shares: same key, same request, or a conflict.

A service that accepts an idempotency key (a task's Idempotency-Key, a run's, a transfer, order or
callback id) stores a hash of the request beside what the first call made. When the key comes again,
`same_request` compares the hashes: the same request gets the first call's record back, and any other
request is refused with `Conflict` code `idempotency_conflict` — the key never does two things.
"""

from __future__ import annotations

from typing import Any, Protocol, TypeVar

from kit.errors import Conflict


class Fingerprinted(Protocol):
    """A record stored with the hash of the request that made it."""

    @property
    def request_hash(self) -> str: ...


R = TypeVar("R", bound=Fingerprinted)


def same_request(earlier: R | None, request_hash: str, message: str, **details: Any) -> R:
    """`earlier` — what a call with the same key made — when that call sent this very request.

    Raises `Conflict` (`idempotency_conflict`, with `message` and `details`) when the hashes differ, and
    when there is no record to compare (the key is taken, yet what holds it cannot be read).
    """
    if earlier is None or earlier.request_hash != request_hash:
        raise Conflict(message, code="idempotency_conflict", **details)
    return earlier
