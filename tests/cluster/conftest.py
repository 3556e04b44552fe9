from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from tests.e2e.stack import Stack
from tests.faults.workload import fault_env
from tests.infra import Infra

# NATS nodes a test killed and started again: children of the test run, not of the launcher.
ADOPTED: list[subprocess.Popen[bytes]] = []


@pytest.fixture(scope="package")
def cluster(infra: Infra, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The cluster shape (`atelier run --cluster`), started once for the package: three NATS nodes of its
    own, two replicas of every service, of the worker and of the gateway; short redelivery timeouts and a
    local provider that fails some tasks."""
    stack = Stack(tmp_path_factory.mktemp("cluster"), infra, cluster=True)
    fault_env(stack)
    # Twelve processes on the suite's one PostgreSQL (100 connections on a CI machine): small pools.
    stack.env.update(ATELIER_DB_POOL_SIZE="2", ATELIER_DB_MAX_OVERFLOW="3")
    stack.start(timeout=240)
    yield stack
    for server in ADOPTED:  # scratch data: no need for their graceful stop (SeaweedFS takes 15 s)
        server.kill()
        server.wait()
    stack.stop()
