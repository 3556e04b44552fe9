"""Rate limits that hold across gateway replicas: GCRA over a JetStream key-value bucket.

GCRA (the generic cell rate algorithm) is a token bucket kept as one number per key, the theoretical
arrival time (TAT): each allowed request moves it `interval` further; a request is refused while the
TAT would run more than `burst` intervals ahead of now, and the excess is its Retry-After. One number
means one compare-and-set per request on the shared bucket (`RATELIMITS`, see kit/bus.py): two replicas
taking the same key race on the entry's revision and the loser decides again on the winner's TAT, so
the limit holds exactly whichever replica a request reaches.

Guarantees and bounds:
- With NATS reachable, at most `burst` requests at once and one per `interval` after that, per key,
  across every replica (replicas' clocks are assumed to agree within NTP's milliseconds).
- If NATS cannot answer, each replica falls back to its own memory (logged once per outage): the limit
  then holds per replica, so N replicas admit at most N times the limit until NATS is back.
- Entries expire from the bucket after an hour; an entry a full window old holds nothing anyway.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import struct
import time
from dataclasses import dataclass, field

from nats.js.errors import KeyDeletedError, KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from kit.bus import Bus

log = logging.getLogger(__name__)

BUCKET = "RATELIMITS"
# A take loses a compare-and-set only to another take of the same key that was admitted: past this many
# losses in a row (a key under a storm of concurrent requests) it is refused, never admitted unrecorded.
_CAS_ATTEMPTS = 32
_NATS_TIMEOUT = 0.5


@dataclass(frozen=True)
class Limit:
    """`burst` requests at once, then one more every `interval` seconds."""

    burst: int
    interval: float

    def decide(self, tat: float | None, now: float) -> tuple[float | None, float]:
        """(the new TAT, 0.0) when allowed; (None, seconds to wait) when not."""
        new_tat = max(tat if tat is not None else now, now) + self.interval
        excess = new_tat - now - self.burst * self.interval
        if excess > 1e-9:
            return None, excess
        return new_tat, 0.0


@dataclass
class MemoryStore:
    """One replica's own TATs: the fallback while NATS is away, and all there is in unit tests."""

    max_keys: int = 100_000
    _tats: dict[str, float] = field(default_factory=dict)

    def take(self, key: str, limit: Limit, now: float) -> float:
        new_tat, wait = limit.decide(self._tats.get(key), now)
        if new_tat is not None:
            self._tats[key] = new_tat
            if len(self._tats) > self.max_keys:
                self._tats = {k: tat for k, tat in self._tats.items() if tat > now}  # the rest hold nothing
        return wait

    def reset(self, key: str) -> None:
        self._tats.pop(key, None)


class Limiter:
    """A named limit, shared through `bus` when one is attached, kept in memory otherwise."""

    def __init__(self, name: str, limit: Limit) -> None:
        self.name = name
        self.limit = limit
        self.memory = MemoryStore()
        self._kv: KeyValue | None = None
        self._degraded = False

    async def attach(self, bus: Bus, replicas: int = 1) -> None:
        self._kv = await bus.key_value(BUCKET, replicas)

    async def take(self, key: str) -> float:
        """Spend one request: 0.0 when allowed, otherwise the seconds until one is."""
        if self._kv is not None:
            try:
                wait = await asyncio.wait_for(self._take_shared(self._kv, self._key(key)), _NATS_TIMEOUT)
                self._degraded = False
                return wait
            except Exception as exc:  # NATS away or slow: this replica's memory, said once per outage
                if not self._degraded:
                    log.warning("rate limit %s falls back to this replica's memory: %r", self.name, exc)
                    self._degraded = True
        return self.memory.take(key, self.limit, time.time())

    async def reset(self, key: str) -> None:
        """Forget `key` (a successful login clears its failures)."""
        self.memory.reset(key)
        if self._kv is not None:
            try:
                await asyncio.wait_for(self._kv.purge(self._key(key)), _NATS_TIMEOUT)
            except Exception as exc:
                log.warning("rate limit %s: could not reset a key: %r", self.name, exc)

    def _key(self, key: str) -> str:
        # A TAT means something only under the limit that made it, so the limit is part of the key (during
        # a rollout that changes it, old and new replicas count apart). KV keys are subject tokens: client
        # addresses (`::1`) and emails are not, their base64url is.
        encoded = base64.urlsafe_b64encode(key.encode()).decode().rstrip("=")
        return f"{self.name}.{self.limit.burst}-{self.limit.interval:g}.{encoded}"

    async def _take_shared(self, kv: KeyValue, key: str) -> float:
        for _ in range(_CAS_ATTEMPTS):
            try:
                entry = await kv.get(key)
            except (KeyNotFoundError, KeyDeletedError):
                entry = None
            tat = struct.unpack("!d", entry.value)[0] if entry is not None and entry.value else None
            new_tat, wait = self.limit.decide(tat, time.time())
            if new_tat is None:
                return wait
            value = struct.pack("!d", new_tat)
            try:
                if entry is None:
                    await kv.create(key, value)
                else:
                    await kv.update(key, value, last=entry.revision)
                return 0.0
            except KeyWrongLastSequenceError:
                continue  # another request took this key meanwhile: decide again on its TAT
        return self.limit.interval  # contended past reason: refuse, briefly
