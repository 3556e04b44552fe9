"""JSON logs carrying trace and span ids, with secrets scrubbed before they are written."""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

from opentelemetry import trace

_SECRET_KEYS = re.compile(r"pass(word)?|secret|token|api[_-]?key|authorization|cookie|sign(ature)?$", re.I)
# Each secret is replaced whole, prefix and all, so a grep for `atl_`, `eyJ` or `$argon2` finds none.
_SECRET_VALUES = [
    (re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+"), r"\1[redacted]"),
    (re.compile(r"\batl_(?:live|test)_[A-Za-z0-9_-]*"), "[redacted-api-key]"),
    (re.compile(r"\beyJ[A-Za-z0-9_-]*(?:\.[A-Za-z0-9_-]*){0,2}"), "[redacted-jwt]"),
    (re.compile(r"((?:verify-email|reset-password)/)[A-Za-z0-9_=-]+"), r"\1[redacted]"),
    (re.compile(r"\$argon2(?:id|i|d)?\$[A-Za-z0-9+/=,$.-]*"), "[redacted-password-hash]"),
    # `password=...`, `"token": "..."`, and a statement's `'password_hash': '...'` or `b'...'` digest.
    (
        re.compile(
            r"""(?i)((?:password|secret|token|api_key|key_hash)(?:_hash)?["']?\s*[:=]\s*)"""
            r"""(b?'(?:[^'\\]|\\.)*'|b?"(?:[^"\\]|\\.)*"|[^\s"'&,}\]]+)"""
        ),
        r"\1[redacted]",
    ),
]
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


def scrub(text: str) -> str:
    for pattern, replacement in _SECRET_VALUES:
        text = pattern.sub(replacement, text)
    return text


def _scrub_value(key: str, value: Any) -> Any:
    if _SECRET_KEYS.search(key):
        return "[redacted]"
    if isinstance(value, dict):
        return {k: _scrub_value(str(k), v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_scrub_value(key, v) for v in value]
    if value is None or isinstance(value, (bool, int, float)):
        return value
    # Strings, and whatever json.dumps would otherwise turn into text unscrubbed (an exception...).
    return scrub(value if isinstance(value, str) else str(value))


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "msg": scrub(record.getMessage()),
        }
        span = trace.get_current_span().get_span_context()
        if span.is_valid:
            entry["trace_id"] = format(span.trace_id, "032x")
            entry["span_id"] = format(span.span_id, "016x")
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = _scrub_value(key, value)
        # The traceback and the stack are scrubbed like the message: an exception's text can carry a
        # statement's values, a token, a key.
        if record.exc_info:
            entry["exc"] = scrub(self.formatException(record.exc_info))
        elif record.exc_text:
            entry["exc"] = scrub(record.exc_text)
        if record.stack_info:
            entry["stack"] = scrub(self.formatStack(record.stack_info))
        return json.dumps(entry, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return scrub(super().format(record))


def setup(service: str, *, level: str = "INFO", json_output: bool = True) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter(service)
        if json_output
        else TextFormatter("%(asctime)s %(levelname)s %(name)s %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("nats", "sqlalchemy.engine", "httpx", "httpcore", "alembic.runtime.migration"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
