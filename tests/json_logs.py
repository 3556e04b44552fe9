"""Captures what the processes would write: records formatted by kit.logs' JSON formatter when they
are emitted (the trace and span ids are read from the context current at that moment)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from kit.logs import JsonFormatter


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(JsonFormatter("tests"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


class Written:
    def __init__(self, handler: _Lines) -> None:
        self._handler = handler

    @property
    def text(self) -> str:
        return "\n".join(self._handler.lines)

    def entries(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self._handler.lines]


@contextmanager
def json_logs(*loggers: str) -> Iterator[Written]:
    handler = _Lines()
    targets = [logging.getLogger(name) for name in loggers or ("",)]
    levels = [target.level for target in targets]
    for target in targets:
        target.addHandler(handler)
        target.setLevel(logging.DEBUG)
    try:
        yield Written(handler)
    finally:
        for target, level in zip(targets, levels, strict=True):
            target.removeHandler(handler)
            target.setLevel(level)
