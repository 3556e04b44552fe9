"""Balance, records and usage: every figure a person sees comes from the ledger alone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from google.protobuf.timestamp_pb2 import Timestamp

from atelier.common.v1 import common_pb2
from atelier.ledger.v1 import ledger_pb2, ledger_pb2_grpc
from gateway.auth import CurrentPrincipal
from gateway.convert import to_json
from gateway.problems import Problem
from kit.protoconv import enum_by_name

router = APIRouter(tags=["billing"])

RecordTypeName = Literal["recharge", "consumption", "refund", "adjustment", "callback"]
_RECORD_TYPES = enum_by_name(ledger_pb2.RecordType)
_GROUP_BY = enum_by_name(ledger_pb2.UsageGroupBy)
MAX_USAGE_WINDOW = timedelta(days=366)


def ledger(request: Request) -> ledger_pb2_grpc.LedgerServiceStub:
    return ledger_pb2_grpc.LedgerServiceStub(request.app.state.clients.channels["ledger"])


@router.get("/v1/billing/balance", summary="Your balance: available, held and posted credits")
async def balance(request: Request, principal: CurrentPrincipal) -> dict[str, Any]:
    reply = await ledger(request).GetBalance(
        ledger_pb2.GetBalanceRequest(user_id=principal.user_id), metadata=principal.metadata()
    )
    body: dict[str, Any] = to_json(reply.balance)
    body["user_id"] = principal.user_id
    return body


@router.get(
    "/v1/billing/records",
    summary="Recharge, consumption, refund, adjustment and payment-callback records together, newest first",
)
async def records(
    request: Request,
    principal: CurrentPrincipal,
    type: Annotated[list[RecordTypeName] | None, Query(description="filter; repeat for several")] = None,
    cursor: Annotated[str, Query(max_length=512)] = "",
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> dict[str, Any]:
    reply = await ledger(request).ListRecords(
        ledger_pb2.ListRecordsRequest(
            user_id=principal.user_id,
            page=common_pb2.PageRequest(cursor=cursor, limit=limit),
            types=[_RECORD_TYPES[name] for name in (type or [])],
        ),
        metadata=principal.metadata(),
    )
    return {
        "items": [to_json(record) for record in reply.records],
        "next_cursor": reply.page.next_cursor or None,
    }


def _timestamp(value: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC))
    return stamp


@router.get("/v1/usage", summary="Spend grouped by day, model or kind; totals equal the ledger's")
async def usage(
    request: Request,
    principal: CurrentPrincipal,
    group_by: Literal["day", "model", "kind"] = "day",
    from_: Annotated[datetime | None, Query(alias="from", description="inclusive, RFC 3339")] = None,
    to: Annotated[datetime | None, Query(description="exclusive, RFC 3339")] = None,
    tz: Annotated[str, Query(max_length=64, description="IANA zone for day buckets")] = "UTC",
) -> dict[str, Any]:
    end = to or datetime.now(UTC) + timedelta(seconds=1)
    start = from_ or end - timedelta(days=30)
    if start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    if end.tzinfo is None:
        end = end.replace(tzinfo=UTC)
    if start >= end:
        raise Problem(400, "invalid_range", "`from` must be before `to`")
    if end - start > MAX_USAGE_WINDOW:
        raise Problem(400, "invalid_range", "the usage window is at most 366 days")
    reply = await ledger(request).GetUsage(
        ledger_pb2.GetUsageRequest(
            user_id=principal.user_id,
            from_time=_timestamp(start),
            to_time=_timestamp(end),
            group_by=_GROUP_BY[group_by],
            time_zone="" if tz == "UTC" else tz,
        ),
        metadata=principal.metadata(),
    )
    return {
        "group_by": group_by,
        "from": start.isoformat(),
        "to": end.isoformat(),
        "total": to_json(reply.total),
        "buckets": [to_json(bucket) for bucket in reply.buckets],
    }
