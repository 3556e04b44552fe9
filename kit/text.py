"""Text PostgreSQL cannot store, refused where a request enters: the gateway's HTTP inputs and every
gRPC request a service receives.

PostgreSQL's text and jsonb hold no NUL character, and an unpaired UTF-16 surrogate (JSON's `\\ud800`
escape makes one) has no UTF-8 form at all. Either fails its statement deep inside a service, after
work may already have been done; refused at the edge, it is a 400 naming the field and nothing else.
"""

from __future__ import annotations

import re
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from kit.errors import InvalidArgument

CODE = "invalid_text"
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def storable(text: str) -> bool:
    # Every gRPC request passes here: the common cases (NUL-free ASCII) cost no regex.
    return "\x00" not in text and (text.isascii() or _SURROGATE.search(text) is None)


def ascii_digits(text: str) -> bool:
    """True for a non-empty run of 0-9: `str.isdigit()` also takes '²' (which `int()` refuses) and
    '３' or '٣' (which it reads), so a number from outside is checked with this before `int()`."""
    return text.isascii() and text.isdigit()


def _printable(name: str) -> str:
    """A field name fit for a message and a gRPC status (a map key or JSON key may hold the NUL)."""
    return _UNSTORABLE.sub(lambda found: f"\\u{ord(found.group()):04x}", name)


def unstorable(field: str, location: str | None = None) -> InvalidArgument:
    """The one error for unstorable text, whichever edge found it."""
    field = _printable(field)
    details = {"field": field} if location is None else {"field": field, "location": location}
    return InvalidArgument(
        f"{field} contains a character that cannot be stored (NUL or an unpaired surrogate)",
        code=CODE,
        **details,
    )


def _pointer_token(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def find_in_json(document: Any) -> str | None:
    """The JSON pointer (RFC 6901) of the first unstorable string or object key, or None."""
    # Iterative: a deeply nested body must not be able to exhaust the interpreter's stack.
    pending: list[tuple[str, Any]] = [("", document)]
    while pending:
        pointer, value = pending.pop()
        if isinstance(value, str):
            if not storable(value):
                return pointer
        elif isinstance(value, dict):
            for key in value:
                if not storable(key):
                    return f"{pointer}/{_pointer_token(key)}"
            # Reversed onto the stack, so that the first offender in document order is the one named.
            pending.extend((f"{pointer}/{_pointer_token(k)}", v) for k, v in reversed(value.items()))
        elif isinstance(value, list):
            pending.extend((f"{pointer}/{index}", item) for index, item in reversed(list(enumerate(value))))
    return None


_SKIP, _TEXT, _TEXTS, _MESSAGE, _MESSAGES, _MAP = range(6)
_KINDS: dict[FieldDescriptor, int] = {}
_HAS_TEXT: dict[str, bool] = {}


def _has_text(message_type: Descriptor) -> bool:
    """Whether a message type holds a string anywhere (Money, Timestamp, Duration hold none)."""
    known = _HAS_TEXT.get(message_type.full_name)
    if known is None:
        _HAS_TEXT[message_type.full_name] = True  # a recursive type (Struct) counts as text meanwhile
        known = any(
            field.type == FieldDescriptor.TYPE_STRING
            or (field.message_type is not None and _has_text(field.message_type))
            for field in message_type.fields
        )
        _HAS_TEXT[message_type.full_name] = known
    return known


def _kind(field: FieldDescriptor) -> int:
    """What the walk does with a field, worked out once per field: every gRPC request passes here."""
    kind = _KINDS.get(field)
    if kind is None:
        if field.type == FieldDescriptor.TYPE_STRING:
            kind = _TEXTS if field.is_repeated else _TEXT
        elif field.message_type is None or not _has_text(field.message_type):
            kind = _SKIP
        elif field.message_type.GetOptions().map_entry:
            kind = _MAP
        else:
            kind = _MESSAGES if field.is_repeated else _MESSAGE
        _KINDS[field] = kind
    return kind


def find_in_message(message: Message) -> str | None:
    """The path (`inputs[0].output_id`, `labels[key]`) of the first unstorable string field, or None.

    Walks set fields only, recursively through nested, repeated and map fields.
    """
    pending: list[tuple[str, Message]] = [("", message)]
    while pending:
        prefix, current = pending.pop()
        for field, value in current.ListFields():
            kind = _kind(field)
            if kind == _TEXT:
                if not storable(value):
                    return f"{prefix}{field.name}"
            elif kind == _TEXTS:
                for index, item in enumerate(value):
                    if not storable(item):
                        return f"{prefix}{field.name}[{index}]"
            elif kind == _MESSAGE:
                pending.append((f"{prefix}{field.name}.", value))
            elif kind == _MESSAGES:
                pending.extend((f"{prefix}{field.name}[{i}].", item) for i, item in enumerate(value))
            elif kind == _MAP:
                for key in value:
                    item = value[key]
                    if isinstance(key, str) and not storable(key):
                        return f"{prefix}{field.name}[{key}]"
                    if isinstance(item, Message):
                        pending.append((f"{prefix}{field.name}[{key}].", item))
                    elif isinstance(item, str) and not storable(item):
                        return f"{prefix}{field.name}[{key}]"
    return None


def check_message(message: Any) -> None:
    """Raise `invalid_text` when any string field of a protobuf request cannot be stored."""
    if isinstance(message, Message):
        field = find_in_message(message)
        if field is not None:
            raise unstorable(field)
