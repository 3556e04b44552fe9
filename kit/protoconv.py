"""Protobuf ↔ Python conversions every service shares: times (datetime ↔ google.protobuf.Timestamp).

A Timestamp carries no zone: it is UTC by definition, so datetimes read back from one are always
timezone-aware (UTC), and a naive datetime given to one is taken as UTC (protobuf's own rule).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TypeVar

from google.protobuf.timestamp_pb2 import Timestamp

if TYPE_CHECKING:
    from google.protobuf.internal.enum_type_wrapper import _EnumTypeWrapper

V = TypeVar("V", bound=int)


def timestamp(value: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


def optional_timestamp(value: datetime | None) -> Timestamp | None:
    """None stays None, so that an unset optional field stays unset (`HasField` is False)."""
    return None if value is None else timestamp(value)


def to_datetime(stamp: Timestamp) -> datetime:
    return stamp.ToDatetime(tzinfo=UTC)


def enum_by_name(enum: _EnumTypeWrapper[V]) -> dict[str, V]:
    """Every value of a protobuf enum but the zero (unspecified) one, by its name as an API writes it:
    lower-case, without the type's prefix (BillingUnit's BILLING_UNIT_PER_IMAGE → "per_image")."""
    prefix = re.sub(r"(?<!^)(?=[A-Z])", "_", enum.DESCRIPTOR.name).upper() + "_"
    return {name.removeprefix(prefix).lower(): value for name, value in enum.items() if value != 0}
