"""What a user sees of their money: the statement (transfers and payment callbacks, newest first)
and spend by day, model or kind from the hourly usage rollup."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy.ext.asyncio import AsyncSession

from kit.cursors import decode_cursor, encode_cursor, page_limit, split_page
from kit.errors import InvalidArgument
from kit.money import Credits
from services.ledger import repository as repo
from services.ledger.service.callbacks import CallbackLog
from services.ledger.service.core import LedgerCore
from services.ledger.service.values import DEFAULT_PAGE, MAX_PAGE, Kind, Transfer, _require_id

RECORD_TYPES = ("recharge", "consumption", "refund", "adjustment", "callback")


@dataclass(frozen=True)
class Record:
    id: str
    type: str
    occurred_at: datetime
    delta: Credits
    transfer: Transfer | None = None
    callback: CallbackLog | None = None


def _hour_ceil(at: datetime) -> datetime:
    hour = repo.usage_hour(at)
    return hour if hour == at else hour + timedelta(hours=1)


@dataclass(frozen=True)
class UsageBucket:
    key: str
    spend: Credits
    count: int


@dataclass(frozen=True)
class Usage:
    buckets: list[UsageBucket]
    total: Credits


class Statements(LedgerCore):
    """A user's records and usage."""

    async def records(
        self,
        session: AsyncSession,
        *,
        user_id: str,
        types: Sequence[str] = (),
        cursor: str = "",
        limit: int = 0,
    ) -> tuple[list[Record], str]:
        """A user's statement, newest first: transfers by type and payment callbacks together."""
        user_id = _require_id(user_id, "user_id")
        wanted = list(types) or list(RECORD_TYPES)
        unknown = [t for t in wanted if t not in RECORD_TYPES]
        if unknown:
            raise InvalidArgument(f"unknown record types {unknown}", code="invalid_argument", field="types")
        size = page_limit(limit, default=DEFAULT_PAGE, maximum=MAX_PAGE)
        keys, next_cursor = split_page(
            await repo.record_keys(session, user_id, wanted, decode_cursor(cursor), size + 1),
            size,
            lambda k: encode_cursor(k.occurred_at, k.id),
        )
        transfer_rows = {
            row.id: Transfer.from_row(row)
            for row in await repo.transfers_by_ids(session, [k.id for k in keys if k.source == "transfer"])
        }
        callback_rows = {
            row.id: CallbackLog.from_row(row)
            for row in await repo.callbacks_by_ids(session, [k.id for k in keys if k.source == "callback"])
        }
        records: list[Record] = []
        for key in keys:
            if key.source == "transfer":
                transfer = transfer_rows[key.id]
                records.append(
                    Record(
                        key.id, _record_type(transfer.kind), key.occurred_at, transfer.wallet_delta, transfer
                    )
                )
            else:
                records.append(
                    Record(key.id, "callback", key.occurred_at, Credits(0), callback=callback_rows[key.id])
                )
        return records, next_cursor

    async def usage(
        self,
        session: AsyncSession,
        *,
        user_id: str,
        from_time: datetime | None,
        to_time: datetime | None,
        group_by: str,
        time_zone: str = "",
    ) -> Usage:
        """Spend (captured + debited − refunded) by day, model or kind, from the same transfers as
        the balance. Released holds never count; refunds count against the work they refund.

        Read from the `usage_hourly` rollup: a day bucket is exact in any time zone whose offset is
        whole hours; in a zone off by a fraction of an hour (Asia/Kolkata), the hour that straddles
        local midnight counts on the day its UTC hour starts in. A bucket's count is its charges
        (captures and debits) not fully refunded."""
        user_id = _require_id(user_id, "user_id")
        if group_by not in ("day", "model", "kind"):
            raise InvalidArgument("group_by must be day, model or kind", code="invalid_argument")
        try:
            zone = ZoneInfo(time_zone or "UTC")
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise InvalidArgument(f"unknown time zone {time_zone!r}", code="invalid_argument") from exc
        if from_time and to_time and from_time >= to_time:
            raise InvalidArgument("from_time must be before to_time", code="invalid_argument")
        # Whole UTC hours come from the rollup (O(hours × models × kinds)); a bound not on an hour
        # adds its partial hour from the transfers (at most two hours of them), so results are exact.
        first_hour = _hour_ceil(from_time) if from_time else None
        last_hour = repo.usage_hour(to_time) if to_time else None
        spend: dict[str, int] = {}
        count: dict[str, int] = {}

        def key_of(at: datetime, model: str, kind: str) -> str:
            if group_by == "day":
                return at.astimezone(zone).date().isoformat()
            return (model if group_by == "model" else kind) or "unknown"

        if first_hour and last_hour and first_hour >= last_hour:
            edges = [(from_time, to_time)]  # the window lies within (at most) two partial hours
        else:
            edges = []
            if from_time and first_hour and first_hour != from_time:
                edges.append((from_time, first_hour))
            if to_time and last_hour and last_hour != to_time:
                edges.append((last_hour, to_time))
            for row in await repo.usage_rows(session, user_id, first_hour, last_hour):
                key = key_of(row.hour, row.model, row.kind)
                spend[key] = spend.get(key, 0) + int(row.spend_milli)
                count[key] = count.get(key, 0) + int(row.charges)
        for start, end in edges:
            for spent in await repo.spend_transfers(session, user_id, start, end):
                net = int(spent.amount) - int(spent.refunded)
                if net <= 0:
                    continue  # fully refunded work is not spend
                meta = spent.metadata or {}
                key = key_of(spent.created_at, str(meta.get("model") or ""), str(meta.get("kind") or ""))
                spend[key] = spend.get(key, 0) + net
                count[key] = count.get(key, 0) + 1
        buckets = [
            UsageBucket(key, Credits(spend[key]), count[key])
            for key in sorted(spend)
            if spend[key] != 0 or count[key] != 0
        ]
        return Usage(buckets, Credits(sum(spend.values())))


def _record_type(kind: Kind) -> str:
    for record_type, kinds in repo.RECORD_KINDS.items():
        if kind in kinds:
            return record_type
    return "consumption"
