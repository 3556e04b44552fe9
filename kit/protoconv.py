"""Protobuf ↔ Python conversions every service shares: times (datetime ↔ google.protobuf.Timestamp).

A Timestamp carries no zone: it is UTC by definition, so datetimes read back from one are always
timezone-aware (UTC), and a naive datetime given to one is taken as UTC (protobuf's own rule).
"""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp


def timestamp(value: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


def optional_timestamp(value: datetime | None) -> Timestamp | None:
    """None stays None, so that an unset optional field stays unset (`HasField` is False)."""
    return None if value is None else timestamp(value)


def to_datetime(stamp: Timestamp) -> datetime:
    return stamp.ToDatetime(tzinfo=UTC)
