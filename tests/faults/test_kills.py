"""kill -9 each process at random moments during a stream of submissions and runs; the launcher restarts
it, clients retry with the same Idempotency-Key, and money stays exact."""

from __future__ import annotations

import random
import threading
import time

import pytest

from tests.e2e.stack import Stack
from tests.faults.workload import (
    FULL,
    check_money,
    kill,
    make_users,
    settle,
    stream,
    wait_ready,
    wait_restarted,
)

pytestmark = pytest.mark.slow
PROCESSES = ("ledger", "generation", "workflow", "worker", "gateway")


def test_kill_9_each_process_mid_stream(stack: Stack) -> None:
    users = make_users(stack, 3)
    rounds = 3 if FULL else 1
    seconds = 3.0 * len(PROCESSES) * rounds
    killed: list[str] = []

    def killer() -> None:
        for _ in range(rounds):
            order = list(PROCESSES)
            random.shuffle(order)
            for name in order:
                time.sleep(random.uniform(0.5, 3.0))
                old = kill(stack, name)
                killed.append(name)
                wait_restarted(stack, name, old)
                wait_ready(stack)

    faults = threading.Thread(target=killer)
    faults.start()
    stream(users, seconds, while_alive=faults)
    faults.join()
    assert sorted(killed) == sorted(PROCESSES * rounds)
    settle(users, stack=stack)
    counts = check_money(stack, users)
    assert counts["succeeded"] > 0, counts
    assert counts["failed"] > 0, counts
    assert counts["runs"] > 0, counts
