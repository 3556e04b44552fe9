from __future__ import annotations

from collections.abc import Iterator

import pytest

from devkit.embedded import EmbeddedNats, free_port
from tests.e2e.stack import Stack
from tests.faults.workload import fault_env
from tests.infra import Infra


@pytest.fixture(scope="package")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedNats]:
    """A NATS server of the fault suite's own (the machine's cannot be restarted by a test)."""
    home = tmp_path_factory.mktemp("faults-nats")
    server = EmbeddedNats(home / "data", free_port(), home / "nats.log")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="package")
def stack(
    infra: Infra, nats_server: EmbeddedNats, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """The whole stack with short redelivery timeouts and a local provider that fails some tasks."""
    stack = Stack(tmp_path_factory.mktemp("faults"), infra)
    stack.env["ATELIER_NATS_URL"] = f"nats://127.0.0.1:{nats_server.port}"
    fault_env(stack)
    stack.start()
    yield stack
    stack.stop()
