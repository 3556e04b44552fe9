"""NATS killed and restarted mid-stream (the suite's own server, same port and store): publishers keep
events in their outboxes, consumers reconnect, and money stays exact."""

from __future__ import annotations

import random
import threading
import time

import pytest

from devkit.embedded import EmbeddedNats
from tests.e2e.stack import Stack
from tests.faults.workload import FULL, check_money, make_users, settle, stream, wait_ready

pytestmark = pytest.mark.slow


def test_nats_restarted_mid_stream(stack: Stack, nats_server: EmbeddedNats) -> None:
    users = make_users(stack, 2)
    restarts = 3 if FULL else 1
    port = nats_server.port

    def restarter() -> None:
        for _ in range(restarts):
            time.sleep(random.uniform(1.0, 3.0))
            assert nats_server.process is not None
            nats_server.process.kill()  # kill -9: no clean shutdown
            nats_server.process.wait()
            time.sleep(random.uniform(0.5, 2.0))
            nats_server.start()
            assert nats_server.port == port
            wait_ready(stack)

    faults = threading.Thread(target=restarter)
    faults.start()
    stream(users, 6.0 * restarts, while_alive=faults)
    faults.join()
    settle(users, stack=stack)
    counts = check_money(stack, users)
    assert counts["succeeded"] > 0, counts
