"""The gateway's memory of session checks: an answer is kept exactly `ttl` seconds, never longer."""

from __future__ import annotations

from gateway.sessions import SessionCache
from kit.errors import Unauthenticated
from kit.identity import Identity


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_answers_expire_after_the_ttl_and_a_zero_ttl_keeps_nothing() -> None:
    clock = Clock()
    cache = SessionCache(ttl=5.0, clock=clock)
    admin = Identity("u1", role="admin")
    cache.put(("s1", "u1"), admin)
    ended = Unauthenticated("this session has ended", code="session_ended")
    cache.put(("s2", "u2"), ended)
    clock.now += 4.99
    assert cache.get(("s1", "u1")) == admin
    assert cache.get(("s2", "u2")) is ended
    assert cache.get(("s1", "u2")) is None  # a session is only ever its own user's
    clock.now += 0.01
    assert cache.get(("s1", "u1")) is None
    assert cache.get(("s2", "u2")) is None

    never = SessionCache(ttl=0, clock=clock)
    never.put(("s1", "u1"), admin)
    assert never.get(("s1", "u1")) is None


def test_the_cache_stays_bounded() -> None:
    clock = Clock()
    cache = SessionCache(ttl=5.0, max_entries=10, clock=clock)
    for i in range(25):
        cache.put((f"s{i}", "u"), Identity("u"))
    assert len(cache._entries) <= 10
    assert cache.get(("s24", "u")) is not None, "the newest answers are kept"
