"""Password hashing (argon2id), the password policy, and the random secrets the service hands out.

Hashing runs in a worker thread: argon2id is deliberately slow and memory-hard, and must not stall
the event loop that serves other calls. Each hash or verify holds `memory_kib` of memory while it
runs, so at most `max_concurrent` run at once and the rest wait their turn: the process's peak is
its idle footprint plus `max_concurrent × memory_kib`, whatever the number of cores (the default
thread pool grows with them) or of simultaneous registrations and logins.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets as random
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from kit.errors import InvalidArgument

MIN_PASSWORD_LENGTH = 10
# argon2 hashes any length, but a megabyte password is a denial-of-service vector, not a password.
MAX_PASSWORD_LENGTH = 256
# The most common passwords of at least the minimum length (from public breach corpora).
_COMMON = frozenset(
    {
        "1234567890",
        "0123456789",
        "12345678910",
        "123456789a",
        "1q2w3e4r5t",
        "qwertyuiop",
        "1qaz2wsx3edc",
        "password12",
        "password123",
        "password1234",
        "iloveyou12",
        "qwerty1234",
        "qwerty12345",
        "abcdefghij",
        "aaaaaaaaaa",
        "letmein123",
        "welcome123",
        "admin12345",
        "administrator",
        "changeme123",
        "football123",
        "baseball123",
        "sunshine123",
        "princess123",
        "1111111111",
        "0000000000",
        "asdfghjkl1",
        "zaq12wsxcde",
    }
)


def check_password_policy(password: str, *, email: str = "") -> None:
    """NIST 800-63B style: length over composition rules; refuse the obvious and the common."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidArgument(
            f"the password needs at least {MIN_PASSWORD_LENGTH} characters",
            code="weak_password",
            min_length=MIN_PASSWORD_LENGTH,
        )
    if len(password) > MAX_PASSWORD_LENGTH:
        raise InvalidArgument(
            f"the password may have at most {MAX_PASSWORD_LENGTH} characters",
            code="weak_password",
            max_length=MAX_PASSWORD_LENGTH,
        )
    lowered = password.lower()
    local = email.split("@", 1)[0].lower()
    if len(set(password)) < 4 or lowered in _COMMON or (len(local) >= 4 and local in lowered):
        raise InvalidArgument("this password is too easy to guess", code="weak_password")


# The memory all argon2 hashes in flight may hold together. With the production cost (64 MiB each)
# that is 4 at once; docs/operations.md ("Capacity") has the arithmetic against the pod's limit.
HASHING_MEMORY_BUDGET_KIB = 256 * 1024


def default_max_concurrent(memory_kib: int) -> int:
    """How many hashes fit in HASHING_MEMORY_BUDGET_KIB at `memory_kib` each (at least one)."""
    return max(1, HASHING_MEMORY_BUDGET_KIB // memory_kib)


@dataclass
class Passwords:
    time_cost: int
    memory_kib: int
    parallelism: int
    # None: as many as fit in HASHING_MEMORY_BUDGET_KIB.
    max_concurrent: int | None = None

    def __post_init__(self) -> None:
        self._hasher = PasswordHasher(
            time_cost=self.time_cost, memory_cost=self.memory_kib, parallelism=self.parallelism
        )
        self._dummy: str | None = None
        if self.max_concurrent is None:
            self.max_concurrent = default_max_concurrent(self.memory_kib)
        self._slots = asyncio.Semaphore(self.max_concurrent)

    async def hash(self, password: str) -> str:
        async with self._slots:
            return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, stored_hash: str | None, password: str) -> bool:
        """True when `password` matches. With no stored hash, a dummy hash is verified instead, so an
        unknown account costs the same time as a wrong password."""
        if stored_hash is None:
            if self._dummy is None:
                self._dummy = await self.hash(random.token_urlsafe(16))
            stored_hash = self._dummy
            password = password + "\x00never-matches"
        async with self._slots:
            return await asyncio.to_thread(self._verify, stored_hash, password)

    def _verify(self, stored_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(stored_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, stored_hash: str) -> bool:
        return self._hasher.check_needs_rehash(stored_hash)


def new_token() -> str:
    """256 bits from the OS CSPRNG, URL-safe."""
    return random.token_urlsafe(32)


def digest(token: str) -> bytes:
    """What is stored and looked up: SHA-256 of the token (the token itself is never stored)."""
    return hashlib.sha256(token.encode()).digest()


API_KEY_PREFIXES = ("atl_live_", "atl_test_")
_API_KEY = re.compile(r"^atl_(live|test)_([a-z0-9]{8})_([A-Za-z0-9_-]{43})$")


def new_api_key(live: bool) -> tuple[str, str]:
    """(full key, visible prefix). The prefix names the key in lists; the rest is the secret."""
    visible = f"{'atl_live_' if live else 'atl_test_'}{random.token_hex(4)}"
    return f"{visible}_{random.token_urlsafe(32)}", visible


def looks_like_api_key(candidate: str) -> bool:
    return bool(_API_KEY.match(candidate))
