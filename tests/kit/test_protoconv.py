"""kit.protoconv: datetimes and protobuf Timestamps convert both ways, always in UTC."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from google.protobuf.timestamp_pb2 import Timestamp

from atelier.workflow.v1 import workflow_pb2
from kit.protoconv import optional_timestamp, timestamp, to_datetime


def test_a_datetime_round_trips_to_the_microsecond_in_utc() -> None:
    at = datetime(2026, 12, 7, 18, 30, 5, 123456, tzinfo=timezone(timedelta(hours=8)))
    stamp = timestamp(at)
    assert isinstance(stamp, Timestamp)
    back = to_datetime(stamp)
    assert back == at
    assert back.tzinfo is UTC


def test_an_absent_time_leaves_an_optional_field_unset() -> None:
    assert optional_timestamp(None) is None
    run = workflow_pb2.Run(started_at=optional_timestamp(None))
    assert not run.HasField("started_at")
    at = datetime(2026, 1, 2, tzinfo=UTC)
    run = workflow_pb2.Run(started_at=optional_timestamp(at))
    assert run.HasField("started_at")
    assert to_datetime(run.started_at) == at
