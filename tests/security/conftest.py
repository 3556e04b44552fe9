from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.stack import Stack
from tests.infra import Infra


@pytest.fixture(scope="module")
def stack(infra: Infra, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The whole product as the launcher starts it: every gRPC connection mutual TLS."""
    stack = Stack(tmp_path_factory.mktemp("secured"), infra)
    stack.start()
    yield stack
    stack.stop()
