"""Protobuf → JSON for the public API, in one place.

- `atelier.common.v1.Credits` becomes a decimal string ("0.5", "330");
- `atelier.common.v1.Money` becomes {"amount": "300.00", "currency": "CNY"};
- timestamps become RFC 3339 strings (unset → null);
- enum values lose their type prefix and are lower-cased (TASK_STATUS_SUCCEEDED → "succeeded");
- Struct/Value fields become plain JSON.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from google.protobuf.descriptor import EnumDescriptor
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from kit.money import Credits, Money
from kit.protoconv import V, enum_by_name

if TYPE_CHECKING:
    from google.protobuf.internal.enum_type_wrapper import _EnumTypeWrapper

_CREDITS = "atelier.common.v1.Credits"
_MONEY = "atelier.common.v1.Money"
_OPAQUE = {"google.protobuf.Struct", "google.protobuf.Value", "google.protobuf.ListValue"}


def credits_text(message: Any) -> str:
    """An `atelier.common.v1.Credits` as the API writes it: a decimal string ("0.5", "330")."""
    return str(Credits(message.milli))


def money_json(message: Any) -> dict[str, str]:
    """A set `atelier.common.v1.Money` as {"amount": "300.00", "currency": "CNY"}."""
    money = Money(message.minor, message.currency)
    return {"amount": money.major_str(), "currency": money.currency}


def enum_name(descriptor: EnumDescriptor, number: int) -> str:
    value = descriptor.values_by_number.get(number)
    if value is None:
        return str(number)
    prefix = "".join(("_" + c if c.isupper() else c) for c in descriptor.name).lstrip("_").upper() + "_"
    name = value.name
    return (name[len(prefix) :] if name.startswith(prefix) else name).lower()


def names_by_value(enum: _EnumTypeWrapper[V]) -> dict[V, str]:
    """The inverse of `kit.protoconv.enum_by_name`: each value but the zero one → its API name."""
    return {value: name for name, value in enum_by_name(enum).items()}


def to_json(message: Message) -> Any:
    full_name = message.DESCRIPTOR.full_name
    if full_name == _CREDITS:
        return credits_text(message)
    if full_name == _MONEY:
        return money_json(message) if message.currency else None  # type: ignore[attr-defined]
    if isinstance(message, Timestamp):
        if not message.seconds and not message.nanos:
            return None
        return message.ToDatetime().isoformat() + "Z"
    if full_name in _OPAQUE:
        return MessageToDict(message)
    result: dict[str, Any] = {}
    for field in message.DESCRIPTOR.fields:
        value = getattr(message, field.name)
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            value_field = field.message_type.fields_by_name["value"]
            result[field.name] = {key: _value(value_field, item) for key, item in value.items()}
        elif field.is_repeated:
            result[field.name] = [_value(field, item) for item in value]
        elif field.message_type is not None:
            if (
                field.containing_oneof is not None
                and message.WhichOneof(field.containing_oneof.name) != field.name
            ):
                continue
            result[field.name] = to_json(value) if message.HasField(field.name) else None
        else:
            if (
                field.containing_oneof is not None
                and message.WhichOneof(field.containing_oneof.name) != field.name
            ):
                continue
            result[field.name] = _value(field, value)
    return result


def _value(field: Any, value: Any) -> Any:
    if field.message_type is not None:
        return to_json(value)
    if field.enum_type is not None:
        return enum_name(field.enum_type, value)
    return value
