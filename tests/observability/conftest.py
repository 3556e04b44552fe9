from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.stack import Stack
from tests.infra import Infra
from tests.observability.receiver import Receiver

TRACING_UI = "https://tempo.example.test/explore?trace={trace_id}"


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    receiver.start()
    yield receiver
    receiver.stop()


@pytest.fixture(scope="module")
def traced_stack(
    infra: Infra, receiver: Receiver, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """The whole stack as processes, every one exporting its spans over OTLP to `receiver`."""
    stack = Stack(tmp_path_factory.mktemp("traced-stack"), infra)
    stack.env.update(
        ATELIER_OTEL_EXPORTER="otlp",
        ATELIER_OTEL_ENDPOINT=receiver.endpoint,
        ATELIER_TRACING_UI_URL=TRACING_UI,
        OTEL_BSP_SCHEDULE_DELAY="100",  # export within 0.1 s instead of 5 s
    )
    stack.start()
    yield stack
    stack.stop()
