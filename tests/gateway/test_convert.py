from __future__ import annotations

from google.protobuf.timestamp_pb2 import Timestamp

from atelier.catalog.v1 import catalog_pb2
from atelier.common.v1 import common_pb2
from atelier.ledger.v1 import ledger_pb2
from gateway.convert import enum_name, names_by_value, to_json
from kit.protoconv import enum_by_name


def test_money_credits_enums_and_times_read_like_the_api() -> None:
    transfer = ledger_pb2.Transfer(
        id="hold:t1:1",
        kind=ledger_pb2.TRANSFER_KIND_HOLD,
        amount=common_pb2.Credits(milli=500),
        status=ledger_pb2.TRANSFER_STATUS_PENDING,
        metadata={"model": "gpt-image-1.5-all"},
        created_at=Timestamp(seconds=1_773_446_400),
    )
    body = to_json(transfer)
    assert body["amount"] == "0.5"
    assert body["kind"] == "hold"
    assert body["status"] == "pending"
    assert body["metadata"] == {"model": "gpt-image-1.5-all"}
    assert body["created_at"] == "2026-03-14T00:00:00Z"
    assert body["expires_at"] is None


def test_oneof_shows_only_the_set_branch() -> None:
    record = ledger_pb2.Record(id="r1", callback=ledger_pb2.CallbackLog(provider="alipay"))
    body = to_json(record)
    assert "transfer" not in body
    assert body["callback"]["provider"] == "alipay"
    assert to_json(common_pb2.Money(minor=30000, currency="CNY")) == {"amount": "300.00", "currency": "CNY"}


def test_enum_tables_use_the_names_the_api_writes_and_leave_out_unspecified() -> None:
    units = enum_by_name(catalog_pb2.BillingUnit)
    assert units == {
        "per_generation": catalog_pb2.BILLING_UNIT_PER_GENERATION,
        "per_image": catalog_pb2.BILLING_UNIT_PER_IMAGE,
        "per_second": catalog_pb2.BILLING_UNIT_PER_SECOND,
        "per_1k_tokens": catalog_pb2.BILLING_UNIT_PER_1K_TOKENS,
    }
    assert enum_by_name(ledger_pb2.UsageGroupBy)["day"] == ledger_pb2.USAGE_GROUP_BY_DAY
    names = names_by_value(ledger_pb2.RecordType)
    assert names == {value: name for name, value in enum_by_name(ledger_pb2.RecordType).items()}
    # The same names `to_json` writes for these values.
    assert all(enum_name(ledger_pb2.RecordType.DESCRIPTOR, value) == name for value, name in names.items())
