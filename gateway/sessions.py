"""What accounts last said about each session, kept a few seconds per gateway replica.

A session access token lives up to 15 minutes, but a demotion, a disable, a password reset or a
sign-out must reach every replica within 5 s. So the gateway asks accounts about the session a token
names (`CheckSession`) and remembers the answer, the user's current identity or the refusal, for at
most `ttl` seconds. Remembering refusals too keeps a revoked but well-signed token from turning into
one accounts call per request. Errors other than a refusal are never remembered.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from kit.errors import DomainError
from kit.identity import Identity

# (session id, user id): a token can only name its own user's session.
SessionKey = tuple[str, str]


# The user's current identity, or accounts' refusal (`session_ended`, `account_disabled`).
Answer = Identity | DomainError


@dataclass
class SessionCache:
    ttl: float
    max_entries: int = 100_000
    clock: Callable[[], float] = time.monotonic
    _entries: dict[SessionKey, tuple[float, Answer]] = field(default_factory=dict)

    def get(self, key: SessionKey) -> Answer | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, answer = entry
        if self.clock() >= expires:
            del self._entries[key]
            return None
        return answer

    def put(self, key: SessionKey, answer: Answer) -> None:
        if self.ttl <= 0:
            return
        now = self.clock()
        self._entries.pop(key, None)  # re-inserted last: the dict stays in expiry order
        self._entries[key] = (now + self.ttl, answer)
        if len(self._entries) > self.max_entries:
            self._prune(now)

    def _prune(self, now: float) -> None:
        """Drop what has expired; if every entry is still fresh, the oldest half."""
        fresh = {k: v for k, v in self._entries.items() if v[0] > now}
        if len(fresh) > self.max_entries:
            fresh = dict(list(fresh.items())[len(fresh) // 2 :])
        self._entries = fresh
