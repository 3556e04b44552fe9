from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.stack import Stack
from tests.faults.workload import fault_env
from tests.infra import Infra


@pytest.fixture(scope="package")
def stack(infra: Infra, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The whole stack with short redelivery timeouts and a local provider that fails some tasks."""
    stack = Stack(tmp_path_factory.mktemp("faults"), infra)
    fault_env(stack)
    stack.start()
    yield stack
    stack.stop()
