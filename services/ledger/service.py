"""The ledger's rules, pure of transport: each function takes the caller's session, flushes only, and
raises DomainErrors. The edge (servicer, consumer, sweeper) owns the transaction.

Accounts: "user:<id>" wallets (never below zero) and system accounts. Every wallet change locks the
wallet row first (`SELECT … FOR UPDATE`); system rows are touched after it, always in the same order,
so concurrent transfers serialize per wallet and never deadlock.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import psycopg
from google.protobuf.timestamp_pb2 import Timestamp
from opentelemetry import context as otel_context
from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncSession

from atelier.common.v1 import common_pb2
from atelier.events.v1 import events_pb2
from kit.db import after_commit
from kit.errors import Conflict, DomainError, FailedPrecondition, InvalidArgument, NotFound
from kit.money import Credits, Money
from kit.outbox import Outbox, OutboxEvent
from kit.telemetry import current_trace_id
from services.ledger import metrics
from services.ledger import repository as repo

log = logging.getLogger(__name__)

BALANCES_CHANGED = "balances.changed"
PAYMENTS_COMPLETED = "payments.completed"

REVENUE = "system:revenue"
BONUS = "system:bonus"
REFUNDS = "system:refunds"
ADJUSTMENTS = "system:adjustments"

DEFAULT_HOLD_TTL = timedelta(hours=2)
MAX_PAGE = 200
DEFAULT_PAGE = 50


class Kind(StrEnum):
    RECHARGE = "recharge"
    BONUS = "bonus"
    GRANT = "grant"
    HOLD = "hold"
    CAPTURE = "capture"
    RELEASE = "release"
    DEBIT = "debit"
    REFUND = "refund"
    ADJUSTMENT = "adjustment"


class Status(StrEnum):
    PENDING = "pending"
    POSTED = "posted"
    VOIDED = "voided"
    EXPIRED = "expired"


class OrderStatus(StrEnum):
    PENDING = "pending"
    COMPLETED = "completed"
    FAILED = "failed"
    EXPIRED = "expired"


CREDIT_KINDS = (Kind.RECHARGE, Kind.BONUS, Kind.GRANT)
RECORD_TYPES = ("recharge", "consumption", "refund", "adjustment", "callback")
CALLBACK_OUTCOMES = ("credited", "duplicate", "ignored", "rejected", "error")


def wallet_account(user_id: str) -> str:
    return f"user:{user_id}"


def payments_account(provider: str, currency: str) -> str:
    return f"system:payments:{provider}:{currency}"


# -- values -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reference:
    type: str = ""
    id: str = ""


@dataclass(frozen=True)
class Transfer:
    id: str
    kind: Kind
    debit_account: str
    credit_account: str
    amount: Credits
    status: Status
    user_id: str
    reference: Reference
    metadata: dict[str, str]
    trace_id: str
    created_at: datetime
    linked_transfer_id: str = ""
    expires_at: datetime | None = None
    resolved_at: datetime | None = None
    reason: str = ""
    actor_id: str = ""

    @classmethod
    def from_row(cls, row: Row[Any]) -> Transfer:
        return cls(
            id=row.id,
            kind=Kind(row.kind),
            debit_account=row.debit_account,
            credit_account=row.credit_account,
            amount=Credits(int(row.amount)),
            status=Status(row.status),
            user_id=row.user_id or "",
            reference=Reference(row.reference_type, row.reference_id),
            metadata=dict(row.metadata or {}),
            trace_id=row.trace_id,
            created_at=row.created_at,
            linked_transfer_id=row.linked_transfer_id or "",
            expires_at=row.expires_at,
            resolved_at=row.resolved_at,
            reason=row.reason,
            actor_id=row.actor_id,
        )

    @property
    def wallet_delta(self) -> Credits:
        """Signed change of the wallet's posted balance (0 for holds and releases)."""
        if self.kind in (Kind.HOLD, Kind.RELEASE) or not self.user_id:
            return Credits(0)
        wallet = wallet_account(self.user_id)
        if self.credit_account == wallet:
            return self.amount
        if self.debit_account == wallet:
            return -self.amount
        return Credits(0)


@dataclass(frozen=True)
class Balance:
    user_id: str
    available: Credits
    held: Credits
    posted: Credits
    version: int
    updated_at: datetime | None

    @classmethod
    def from_row(cls, user_id: str, row: Row[Any] | None) -> Balance:
        if row is None:
            return cls(user_id, Credits(0), Credits(0), Credits(0), 0, None)
        posted = int(row.posted_credits) - int(row.posted_debits)
        held = int(row.pending_debits)
        return cls(
            user_id, Credits(posted - held), Credits(held), Credits(posted), row.version, row.updated_at
        )


@dataclass(frozen=True)
class TransferResult:
    transfer: Transfer
    balance: Balance
    replayed: bool
    hold: Transfer | None = None
    refundable_remaining: Credits | None = None


@dataclass(frozen=True)
class HoldPlan:
    """A checked hold request, ready to apply (its trace id is the requester's)."""

    transfer_id: str
    user_id: str
    amount: Credits
    expires_at: datetime
    reference: Reference
    metadata: dict[str, str]
    digest: str
    trace_id: str
    trace: otel_context.Context

    @property
    def account(self) -> str:
        return wallet_account(self.user_id)


@dataclass(frozen=True)
class CapturePlan:
    """A checked capture request, ready to apply (its trace id is the requester's)."""

    transfer_id: str
    hold_id: str
    amount: Credits | None
    metadata: dict[str, str]
    now: datetime
    digest: str
    trace_id: str
    trace: otel_context.Context


@dataclass(frozen=True)
class FastStep:
    """One transfer's happy path: a step of `ledger_apply` (its `kind` and arguments) and how to read
    its row."""

    params: dict[str, Any]
    result: Callable[[Any], TransferResult]
    trace: otel_context.Context


@dataclass(frozen=True)
class RechargeOrder:
    id: str
    user_id: str
    method: str
    provider: str
    amount: Money
    plan_code: str
    paid_credits: Credits
    bonus_credits: Credits
    catalog_version: int
    status: OrderStatus
    provider_checkout_id: str
    pay_url: str
    provider_transaction_id: str
    paid_amount: Money | None
    failure_reason: str
    credit_transfer_id: str
    bonus_transfer_id: str
    created_at: datetime
    expires_at: datetime | None
    completed_at: datetime | None
    trace_id: str

    @classmethod
    def from_row(cls, row: Row[Any]) -> RechargeOrder:
        return cls(
            id=row.id,
            user_id=row.user_id,
            method=row.method,
            provider=row.provider,
            amount=Money(int(row.amount_minor), row.currency),
            plan_code=row.plan_code,
            paid_credits=Credits(int(row.paid_credits)),
            bonus_credits=Credits(int(row.bonus_credits)),
            catalog_version=int(row.catalog_version),
            status=OrderStatus(row.status),
            provider_checkout_id=row.provider_checkout_id,
            pay_url=row.pay_url,
            provider_transaction_id=row.provider_transaction_id or "",
            paid_amount=Money(int(row.paid_minor), row.paid_currency) if row.paid_currency else None,
            failure_reason=row.failure_reason,
            credit_transfer_id=row.credit_transfer_id or "",
            bonus_transfer_id=row.bonus_transfer_id or "",
            created_at=row.created_at,
            expires_at=row.expires_at,
            completed_at=row.completed_at,
            trace_id=row.trace_id,
        )


@dataclass(frozen=True)
class CallbackLog:
    id: str
    provider: str
    provider_event_id: str
    order_id: str
    user_id: str
    verified: bool
    outcome: str
    reason: str
    provider_status: str
    provider_transaction_id: str
    amount: Money | None
    payload_json: str
    headers: dict[str, str]
    remote_addr: str
    received_at: datetime
    trace_id: str

    @classmethod
    def from_row(cls, row: Row[Any]) -> CallbackLog:
        amount = None
        if row.amount_currency and row.amount_minor is not None:
            amount = Money(int(row.amount_minor), row.amount_currency)
        return cls(
            id=row.id,
            provider=row.provider,
            provider_event_id=row.provider_event_id,
            order_id=row.order_id,
            user_id=row.user_id,
            verified=row.verified,
            outcome=row.outcome,
            reason=row.reason,
            provider_status=row.provider_status,
            provider_transaction_id=row.provider_transaction_id,
            amount=amount,
            payload_json=row.payload_json,
            headers=dict(row.headers or {}),
            remote_addr=row.remote_addr,
            received_at=row.received_at,
            trace_id=row.trace_id,
        )


@dataclass(frozen=True)
class CompletionResult:
    order: RechargeOrder
    already_completed: bool
    balance: Balance


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


@dataclass(frozen=True)
class Violation:
    invariant: str
    subject: str
    detail: str


@dataclass(frozen=True)
class ReconcileReport:
    violations: list[Violation]
    accounts_checked: int
    transfers_checked: int
    orders_checked: int
    checked_at: datetime


@dataclass(frozen=True)
class SpendChain:
    reference: Reference
    transfers: list[Transfer]
    order: RechargeOrder | None
    callbacks: list[CallbackLog]
    trace_ids: list[str] = field(default_factory=list)


class _IdTaken(Exception):
    """The transfer id already exists (found by the insert itself)."""


class TransferRefused(FailedPrecondition):
    """A transfer refused for good: the edge records its id (`Ledger.record_failure`) so that a retry
    with the same id is refused again rather than succeeding later."""

    transfer_id: str = ""
    request_hash: str = ""


class AmountMismatch(FailedPrecondition):
    """The provider reports a payment that is not what the order asks for."""

    default_code = "amount_mismatch"


# -- helpers ----------------------------------------------------------------------------------------


def _committed(transfer: Transfer) -> None:
    """Once a transfer's transaction committed: its metrics and one log line; the trace id is the one
    stored on it, so `grep <trace_id>` over the logs finds every credit the request moved."""
    metrics.count_transfer(transfer.kind.value, transfer.amount.milli, transfer.metadata, transfer.trace_id)
    log.info(
        "transfer %s posted: %s %s for %s",
        transfer.id,
        transfer.kind.value,
        transfer.amount,
        transfer.user_id,
        extra={
            "transfer_id": transfer.id,
            "kind": transfer.kind.value,
            "amount": str(transfer.amount),
            "user_id": transfer.user_id,
            "reference": f"{transfer.reference.type}:{transfer.reference.id}",
            **({"trace_id": transfer.trace_id} if transfer.trace_id else {}),
        },
    )


def request_hash(operation: str, **fields: Any) -> str:
    """A stable digest of a mutation's body: the same id with another body is a conflict."""
    body = json.dumps({"op": operation, **fields}, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(body.encode()).hexdigest()


def _require_id(value: str, name: str) -> str:
    value = value.strip()
    if not value:
        raise InvalidArgument(f"{name} is required", code="invalid_argument", field=name)
    if len(value) > 200:
        raise InvalidArgument(f"{name} is too long", code="invalid_argument", field=name)
    return value


def _require_positive(amount: Credits, name: str = "amount") -> None:
    if amount.milli <= 0:
        raise InvalidArgument(f"{name} must be positive", code="invalid_amount", field=name)


def _check_replay(existing: Row[Any], digest: str) -> None:
    if existing.request_hash != digest:
        raise Conflict(
            f"transfer id {existing.id!r} was already used with a different request",
            code="idempotency_conflict",
            transfer_id=existing.id,
        )


def _taken_meanwhile(transfer_id: str) -> Conflict:
    return Conflict(
        f"transfer id {transfer_id!r} was taken by a concurrent request",
        code="idempotency_conflict",
        transfer_id=transfer_id,
    )


def _insufficient(available: int, amount: int, transfer_id: str, digest: str) -> TransferRefused:
    error = TransferRefused(
        "the available balance cannot cover this amount",
        code="insufficient_balance",
        available=str(Credits(available)),
        required=str(Credits(amount)),
    )
    error.transfer_id, error.request_hash = transfer_id, digest
    return error


def _available(wallet: Row[Any]) -> int:
    return int(wallet.posted_credits) - int(wallet.posted_debits) - int(wallet.pending_debits)


def _encode_cursor(at: datetime, last_id: str) -> str:
    raw = json.dumps([at.isoformat(), last_id])
    return base64.urlsafe_b64encode(raw.encode()).decode()


def _decode_cursor(cursor: str) -> tuple[datetime, str] | None:
    if not cursor:
        return None
    try:
        at, last_id = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        return datetime.fromisoformat(at), str(last_id)
    except (ValueError, TypeError) as exc:
        raise InvalidArgument("the cursor is not valid", code="invalid_cursor") from exc


def page_limit(limit: int) -> int:
    if limit < 0:
        raise InvalidArgument("limit must not be negative", code="invalid_argument", field="limit")
    return min(limit or DEFAULT_PAGE, MAX_PAGE)


def _timestamp(value: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


# -- the ledger -------------------------------------------------------------------------------------


class Ledger:
    """The rules. Holds the outbox it writes `balances.changed` / `payments.completed` into."""

    def __init__(self, outbox: Outbox, *, producer: str = "ledger") -> None:
        self.outbox = outbox
        self.producer = producer

    # .. events ......................................................................................

    async def _balance_changed(
        self, session: AsyncSession, user_id: str, wallet: Row[Any], transfer_id: str
    ) -> Balance:
        balance = Balance.from_row(user_id, wallet)
        await self.outbox.add_many(session, [self._balance_event(balance, transfer_id)])
        return balance

    def _balance_event(
        self, balance: Balance, transfer_id: str, trace: otel_context.Context | None = None
    ) -> OutboxEvent:
        event_id = uuid.uuid4()
        message = events_pb2.BalanceChanged(
            meta=self._meta(event_id),
            user_id=balance.user_id,
            available=common_pb2.Credits(milli=balance.available.milli),
            held=common_pb2.Credits(milli=balance.held.milli),
            posted=common_pb2.Credits(milli=balance.posted.milli),
            version=balance.version,
            transfer_id=transfer_id,
        )
        return OutboxEvent(BALANCES_CHANGED, message, event_id, trace)

    def _meta(self, event_id: uuid.UUID) -> events_pb2.EventMeta:
        return events_pb2.EventMeta(
            event_id=str(event_id), occurred_at=_timestamp(datetime.now(UTC)), producer=self.producer
        )

    # .. transfers ...................................................................................

    async def _new_transfer(self, session: AsyncSession, **values: Any) -> Transfer:
        values.setdefault("trace_id", current_trace_id())
        row = await repo.insert_transfer(session, values)
        if row is None:
            raise _IdTaken(values["id"])
        transfer = Transfer.from_row(row)
        after_commit(session, lambda: _committed(transfer))
        return transfer

    async def _once(
        self,
        session: AsyncSession,
        transfer_id: str,
        digest: str,
        user_id: str,
        wallet: Row[Any],
        apply: Callable[[], Awaitable[TransferResult]],
    ) -> TransferResult:
        """Runs `apply` (its checks, then its writes, the transfer insert first) under the wallet lock.

        The happy path never looks the id up: only when a check fails or the insert finds the id
        taken is the existing transfer compared — same body → the first result, other → conflict.
        """
        if wallet.failed_code is not None:
            if wallet.failed_hash != digest:
                raise Conflict(
                    f"transfer id {transfer_id!r} was already used with a different request",
                    code="idempotency_conflict",
                    transfer_id=transfer_id,
                )
            raise FailedPrecondition(
                f"{wallet.failed_message} (this transfer id failed before; retry with a new id)",
                code=wallet.failed_code,
                transfer_id=transfer_id,
            )
        try:
            return await apply()
        except (_IdTaken, DomainError) as exc:
            replay = await self._replay(session, transfer_id, digest, user_id, wallet)
            if replay is not None:
                return replay
            if isinstance(exc, _IdTaken):
                raise _taken_meanwhile(transfer_id) from None
            raise

    async def _replay(
        self, session: AsyncSession, transfer_id: str, digest: str, user_id: str, wallet: Row[Any]
    ) -> TransferResult | None:
        existing = await repo.get_transfer(session, transfer_id)
        if existing is None:
            return None
        _check_replay(existing, digest)
        transfer = Transfer.from_row(existing)
        hold = None
        if transfer.kind in (Kind.CAPTURE, Kind.RELEASE) and transfer.linked_transfer_id:
            hold_row = await repo.get_transfer(session, transfer.linked_transfer_id)
            hold = Transfer.from_row(hold_row) if hold_row is not None else None
        remaining = None
        if transfer.kind == Kind.REFUND and transfer.linked_transfer_id:
            original = await repo.get_transfer(session, transfer.linked_transfer_id)
            if original is not None:
                refunded = await repo.refunded_total(session, original.id)
                remaining = Credits(int(original.amount) - refunded)
        return TransferResult(transfer, Balance.from_row(user_id, wallet), True, hold, remaining)

    async def credit(
        self,
        session: AsyncSession,
        *,
        transfer_id: str,
        user_id: str,
        amount: Credits,
        kind: Kind,
        reference: Reference = Reference(),
        reason: str = "",
        actor_id: str = "",
        metadata: Mapping[str, str] | None = None,
        source_account: str | None = None,
    ) -> TransferResult:
        """Credits a wallet: paid recharge credits, bonus credits or an admin grant."""
        transfer_id = _require_id(transfer_id, "transfer_id")
        user_id = _require_id(user_id, "user_id")
        _require_positive(amount)
        if kind not in CREDIT_KINDS:
            raise InvalidArgument(
                "kind must be recharge, bonus or grant", code="invalid_argument", field="kind"
            )
        meta = dict(metadata or {})
        if source_account is None:
            source_account = {
                Kind.RECHARGE: payments_account(meta.get("provider", "direct"), meta.get("currency", "NONE")),
                Kind.BONUS: BONUS,
                Kind.GRANT: ADJUSTMENTS,
            }[kind]
        digest = request_hash(
            "credit",
            user_id=user_id,
            amount=amount.milli,
            kind=str(kind),
            reference=[reference.type, reference.id],
            reason=reason,
            actor_id=actor_id,
            metadata=meta,
        )
        account = wallet_account(user_id)
        wallet = await repo.lock_wallet(session, account, user_id, transfer_id)
        return await self._once(
            session,
            transfer_id,
            digest,
            user_id,
            wallet,
            lambda: self._credit(
                session,
                transfer_id,
                user_id,
                account,
                amount,
                kind,
                reference,
                reason,
                actor_id,
                meta,
                source_account,
                digest,
            ),
        )

    async def _credit(
        self,
        session: AsyncSession,
        transfer_id: str,
        user_id: str,
        account: str,
        amount: Credits,
        kind: Kind,
        reference: Reference,
        reason: str,
        actor_id: str,
        meta: dict[str, str],
        source_account: str,
        digest: str,
    ) -> TransferResult:
        transfer = await self._new_transfer(
            session,
            id=transfer_id,
            kind=str(kind),
            debit_account=source_account,
            credit_account=account,
            amount=amount.milli,
            status=Status.POSTED.value,
            user_id=user_id,
            reference_type=reference.type,
            reference_id=reference.id,
            metadata=meta,
            reason=reason,
            actor_id=actor_id,
            request_hash=digest,
        )
        wallet = await repo.change_wallet(session, account, posted_credits=amount.milli)
        await repo.change_system(session, source_account, user_id, posted_debits=amount.milli)
        balance = await self._balance_changed(session, user_id, wallet, transfer_id)
        return TransferResult(transfer, balance, False)

    def plan_hold(
        self,
        *,
        transfer_id: str,
        user_id: str,
        amount: Credits,
        expires_at: datetime | None = None,
        ttl: timedelta | None = None,
        reference: Reference = Reference(),
        metadata: Mapping[str, str] | None = None,
        now: datetime | None = None,
    ) -> HoldPlan:
        """Checks a hold request (InvalidArgument) and fixes its digest, expiry and trace id."""
        transfer_id = _require_id(transfer_id, "transfer_id")
        user_id = _require_id(user_id, "user_id")
        _require_positive(amount)
        now = now or datetime.now(UTC)
        if expires_at is not None and ttl is not None:
            raise InvalidArgument("give expires_at or ttl, not both", code="invalid_argument", field="ttl")
        if ttl is not None and ttl <= timedelta(0):
            raise InvalidArgument("ttl must be positive", code="invalid_argument", field="ttl")
        if expires_at is not None and expires_at <= now:
            raise InvalidArgument("expires_at is in the past", code="invalid_argument", field="expires_at")
        meta = dict(metadata or {})
        digest = request_hash(
            "hold",
            user_id=user_id,
            amount=amount.milli,
            expires_at=expires_at.isoformat() if expires_at else None,
            ttl=ttl.total_seconds() if ttl else None,
            reference=[reference.type, reference.id],
            metadata=meta,
        )
        expiry = expires_at or now + (ttl or DEFAULT_HOLD_TTL)
        return HoldPlan(
            transfer_id,
            user_id,
            amount,
            expiry,
            reference,
            meta,
            digest,
            current_trace_id(),
            otel_context.get_current(),
        )

    async def hold(
        self,
        session: AsyncSession,
        *,
        transfer_id: str,
        user_id: str,
        amount: Credits,
        expires_at: datetime | None = None,
        ttl: timedelta | None = None,
        reference: Reference = Reference(),
        metadata: Mapping[str, str] | None = None,
        now: datetime | None = None,
    ) -> TransferResult:
        """Reserves `amount` of the available balance until it is captured, released or expires."""
        plan = self.plan_hold(
            transfer_id=transfer_id,
            user_id=user_id,
            amount=amount,
            expires_at=expires_at,
            ttl=ttl,
            reference=reference,
            metadata=metadata,
            now=now,
        )
        return await self.hold_fast(session, plan) or await self.hold_general(session, plan)

    def hold_step(self, plan: HoldPlan) -> FastStep:
        """The happy path as one call; its result is None (nothing written) when `hold_general` must
        run: a first use of the wallet, a retry, a refused id, too little balance."""

        def result(row: Any) -> TransferResult:
            transfer = Transfer(
                id=plan.transfer_id,
                kind=Kind.HOLD,
                debit_account=plan.account,
                credit_account=REVENUE,
                amount=plan.amount,
                status=Status.PENDING,
                user_id=plan.user_id,
                reference=plan.reference,
                metadata=plan.metadata,
                trace_id=plan.trace_id,
                created_at=row.created_at,
                expires_at=plan.expires_at,
            )
            return TransferResult(transfer, Balance.from_row(plan.user_id, row), False)

        params = {
            "kind": "hold",
            "id": plan.transfer_id,
            "user_id": plan.user_id,
            "wallet": plan.account,
            "credit_account": REVENUE,
            "amount": plan.amount.milli,
            "expires_at": plan.expires_at,
            "reference_type": plan.reference.type,
            "reference_id": plan.reference.id,
            "metadata": plan.metadata,
            "trace_id": plan.trace_id,
            "request_hash": plan.digest,
        }
        return FastStep(params, result, plan.trace)

    async def hold_fast(self, session: AsyncSession, plan: HoldPlan) -> TransferResult | None:
        return await self._apply_alone(session, self.hold_step(plan))

    async def hold_general(self, session: AsyncSession, plan: HoldPlan) -> TransferResult:
        """Every case, step by step under the wallet lock: the result, a replay or the error."""
        wallet = await repo.lock_wallet(session, plan.account, plan.user_id, plan.transfer_id)
        return await self._once(
            session,
            plan.transfer_id,
            plan.digest,
            plan.user_id,
            wallet,
            lambda: self._hold(
                session,
                plan.transfer_id,
                plan.user_id,
                plan.account,
                wallet,
                plan.amount,
                plan.expires_at,
                plan.reference,
                plan.metadata,
                plan.digest,
            ),
        )

    async def _hold(
        self,
        session: AsyncSession,
        transfer_id: str,
        user_id: str,
        account: str,
        wallet: Row[Any],
        amount: Credits,
        expiry: datetime,
        reference: Reference,
        meta: dict[str, str],
        digest: str,
    ) -> TransferResult:
        if _available(wallet) < amount.milli:
            raise _insufficient(_available(wallet), amount.milli, transfer_id, digest)
        transfer = await self._new_transfer(
            session,
            id=transfer_id,
            kind=Kind.HOLD.value,
            debit_account=account,
            credit_account=REVENUE,
            amount=amount.milli,
            status=Status.PENDING.value,
            user_id=user_id,
            reference_type=reference.type,
            reference_id=reference.id,
            metadata=meta,
            expires_at=expiry,
            request_hash=digest,
        )
        wallet = await repo.change_wallet(session, account, pending_debits=amount.milli)
        await repo.change_system(session, REVENUE, user_id, pending_credits=amount.milli)
        balance = await self._balance_changed(session, user_id, wallet, transfer_id)
        return TransferResult(transfer, balance, False)

    async def _locked_hold(
        self, session: AsyncSession, hold_id: str, transfer_id: str
    ) -> tuple[Row[Any], Row[Any]]:
        """(wallet, hold), both locked; NotFound for an unknown hold."""
        hold_id = _require_id(hold_id, "hold_id")
        # Hold row first, then its wallet: every path that locks an existing hold does the same.
        hold = await repo.get_transfer(session, hold_id, lock=True)
        if hold is None or hold.kind != Kind.HOLD:
            raise NotFound(f"no hold {hold_id!r}", code="hold_not_found", hold_id=hold_id)
        wallet = await repo.lock_wallet(session, hold.debit_account, hold.user_id, transfer_id)
        return wallet, hold

    @staticmethod
    def _require_pending(hold: Row[Any], now: datetime) -> None:
        status = Status(hold.status)
        if status == Status.POSTED:
            raise FailedPrecondition("the hold was already captured", code="hold_already_captured")
        if status == Status.VOIDED:
            raise FailedPrecondition("the hold was already released", code="hold_already_released")
        if status == Status.EXPIRED or (hold.expires_at is not None and hold.expires_at <= now):
            raise FailedPrecondition("the hold has expired", code="hold_expired")

    def plan_capture(
        self,
        *,
        transfer_id: str,
        hold_id: str,
        amount: Credits | None = None,
        metadata: Mapping[str, str] | None = None,
        now: datetime | None = None,
    ) -> CapturePlan:
        """Checks a capture request (InvalidArgument) and fixes its digest, time and trace id."""
        transfer_id = _require_id(transfer_id, "transfer_id")
        if amount is not None:
            _require_positive(amount)
        meta = dict(metadata or {})
        digest = request_hash(
            "capture", hold_id=hold_id, amount=amount.milli if amount else None, metadata=meta
        )
        hold_id = _require_id(hold_id, "hold_id")
        now = now or datetime.now(UTC)
        trace = otel_context.get_current()
        return CapturePlan(transfer_id, hold_id, amount, meta, now, digest, current_trace_id(), trace)

    async def capture(
        self,
        session: AsyncSession,
        *,
        transfer_id: str,
        hold_id: str,
        amount: Credits | None = None,
        metadata: Mapping[str, str] | None = None,
        now: datetime | None = None,
    ) -> TransferResult:
        """Posts all of a pending hold, or part of it with the rest released. Exactly once."""
        plan = self.plan_capture(
            transfer_id=transfer_id, hold_id=hold_id, amount=amount, metadata=metadata, now=now
        )
        return await self.capture_fast(session, plan) or await self.capture_general(session, plan)

    def capture_step(self, plan: CapturePlan) -> FastStep:
        """The happy path as one call; its result is None (nothing written) when `capture_general`
        must run: a retry, an unknown, resolved or expired hold, too large an amount."""

        def result(row: Any) -> TransferResult:
            reference = Reference(row.hold_reference_type, row.hold_reference_id)
            hold = Transfer(
                id=plan.hold_id,
                kind=Kind.HOLD,
                debit_account=row.hold_debit_account,
                credit_account=row.hold_credit_account,
                amount=Credits(int(row.hold_amount)),
                status=Status.POSTED,
                user_id=row.hold_user_id,
                reference=reference,
                metadata=dict(row.hold_metadata),
                trace_id=row.hold_trace_id,
                created_at=row.hold_created_at,
                expires_at=row.hold_expires_at,
                resolved_at=row.resolved_at,
            )
            capture = Transfer(
                id=plan.transfer_id,
                kind=Kind.CAPTURE,
                debit_account=hold.debit_account,
                credit_account=hold.credit_account,
                amount=Credits(int(row.amount)),
                status=Status.POSTED,
                user_id=hold.user_id,
                reference=reference,
                metadata={**hold.metadata, **plan.metadata},
                trace_id=plan.trace_id,
                created_at=row.created_at,
                linked_transfer_id=plan.hold_id,
            )
            return TransferResult(capture, Balance.from_row(hold.user_id, row), False, hold)

        params = {
            "kind": "capture",
            "id": plan.transfer_id,
            "hold_id": plan.hold_id,
            "amount": plan.amount.milli if plan.amount is not None else None,
            "metadata": plan.metadata,
            "now": plan.now,
            "trace_id": plan.trace_id,
            "request_hash": plan.digest,
        }
        return FastStep(params, result, plan.trace)

    async def capture_fast(self, session: AsyncSession, plan: CapturePlan) -> TransferResult | None:
        return await self._apply_alone(session, self.capture_step(plan))

    async def _apply_alone(self, session: AsyncSession, step: FastStep) -> TransferResult | None:
        """One step in the session's transaction, counted once it commits."""
        connection = await repo.driver_connection(session)
        async with connection.pipeline():
            (result,) = await self.apply_fast(connection, [step])
        after_commit(session, lambda: self.posted([result]))
        return result

    async def apply_fast(
        self, connection: psycopg.AsyncConnection[Any], steps: Sequence[FastStep]
    ) -> list[TransferResult | None]:
        """Runs the steps in order in the connection's open transaction, then queues one
        `balances.changed` event per transfer made, in one statement. None for each step that wrote
        nothing. In pipeline mode the steps take one round trip and the events none of their own."""
        rows = await repo.apply_steps(connection, [step.params for step in steps])
        results = [
            step.result(row) if row.outcome == "ok" else None for step, row in zip(steps, rows, strict=True)
        ]
        await self.outbox.add_many_on(
            connection,
            [
                self._balance_event(result.balance, result.transfer.id, step.trace)
                for step, result in zip(steps, results, strict=True)
                if result is not None
            ],
        )
        return results

    @staticmethod
    def posted(results: Sequence[TransferResult | None]) -> None:
        """Once the fast path's transaction committed: what `_new_transfer` arranges on the general path."""
        for result in results:
            if result is not None:
                _committed(result.transfer)

    async def capture_general(self, session: AsyncSession, plan: CapturePlan) -> TransferResult:
        """Every case, step by step under the hold and wallet locks: the result, a replay or the error."""
        wallet, hold = await self._locked_hold(session, plan.hold_id, plan.transfer_id)
        return await self._once(
            session,
            plan.transfer_id,
            plan.digest,
            hold.user_id,
            wallet,
            lambda: self._capture(
                session, plan.transfer_id, hold, plan.amount, plan.metadata, plan.now, plan.digest
            ),
        )

    async def _capture(
        self,
        session: AsyncSession,
        transfer_id: str,
        hold: Row[Any],
        amount: Credits | None,
        meta: dict[str, str],
        now: datetime,
        digest: str,
    ) -> TransferResult:
        self._require_pending(hold, now)
        held = int(hold.amount)
        posted = held if amount is None else amount.milli
        if posted > held:
            raise FailedPrecondition(
                "cannot capture more than the hold",
                code="capture_exceeds_hold",
                hold=str(Credits(held)),
                requested=str(Credits(posted)),
            )
        transfer = await self._new_transfer(
            session,
            id=transfer_id,
            kind=Kind.CAPTURE.value,
            debit_account=hold.debit_account,
            credit_account=hold.credit_account,
            amount=posted,
            status=Status.POSTED.value,
            user_id=hold.user_id,
            reference_type=hold.reference_type,
            reference_id=hold.reference_id,
            metadata={**dict(hold.metadata or {}), **meta},
            linked_transfer_id=hold.id,
            request_hash=digest,
        )
        await repo.add_usage(session, hold.user_id, transfer.created_at, transfer.metadata, posted, 1)
        resolved = await repo.resolve_hold(session, hold.id, Status.POSTED.value)
        wallet = await repo.change_wallet(
            session, hold.debit_account, pending_debits=-held, posted_debits=posted
        )
        await repo.change_system(
            session, hold.credit_account, hold.user_id, pending_credits=-held, posted_credits=posted
        )
        balance = await self._balance_changed(session, hold.user_id, wallet, transfer_id)
        return TransferResult(transfer, balance, False, Transfer.from_row(resolved))

    async def release(
        self,
        session: AsyncSession,
        *,
        transfer_id: str,
        hold_id: str,
        reason: str = "",
        now: datetime | None = None,
    ) -> TransferResult:
        """Voids a pending hold: its amount is available again. Exactly once."""
        transfer_id = _require_id(transfer_id, "transfer_id")
        now = now or datetime.now(UTC)
        digest = request_hash("release", hold_id=hold_id, reason=reason)
        wallet, hold = await self._locked_hold(session, hold_id, transfer_id)

        async def apply() -> TransferResult:
            self._require_pending(hold, now)
            return await self._void(session, hold, transfer_id, Status.VOIDED, reason, digest)

        return await self._once(session, transfer_id, digest, hold.user_id, wallet, apply)

    async def _void(
        self,
        session: AsyncSession,
        hold: Row[Any],
        transfer_id: str,
        status: Status,
        reason: str,
        digest: str,
    ) -> TransferResult:
        held = int(hold.amount)
        transfer = await self._new_transfer(
            session,
            id=transfer_id,
            kind=Kind.RELEASE.value,
            debit_account=hold.debit_account,
            credit_account=hold.credit_account,
            amount=held,
            status=Status.POSTED.value,
            user_id=hold.user_id,
            reference_type=hold.reference_type,
            reference_id=hold.reference_id,
            metadata=dict(hold.metadata or {}),
            linked_transfer_id=hold.id,
            reason=reason,
            request_hash=digest,
        )
        resolved = await repo.resolve_hold(session, hold.id, status.value)
        wallet = await repo.change_wallet(session, hold.debit_account, pending_debits=-held)
        await repo.change_system(session, hold.credit_account, hold.user_id, pending_credits=-held)
        balance = await self._balance_changed(session, hold.user_id, wallet, transfer_id)
        return TransferResult(transfer, balance, False, Transfer.from_row(resolved))

    async def due_holds(self, session: AsyncSession, *, now: datetime, limit: int = 100) -> list[str]:
        return await repo.expired_hold_ids(session, now, limit)

    async def expire_hold(self, session: AsyncSession, hold_id: str, *, now: datetime) -> Transfer | None:
        """Voids one hold past its expiry (status EXPIRED); None when it was resolved meanwhile.

        One hold per transaction: locking several wallets in one transaction could deadlock with
        transfers that lock a wallet and then the revenue account.
        """
        _, hold = await self._locked_hold(session, hold_id, f"expire:{hold_id}")
        if hold.status != Status.PENDING or hold.expires_at is None or hold.expires_at > now:
            return None
        result = await self._void(
            session,
            hold,
            f"expire:{hold.id}",
            Status.EXPIRED,
            "hold expired",
            request_hash("expire", hold_id=hold.id),
        )
        assert result.hold is not None
        return result.hold

    async def debit(
        self,
        session: AsyncSession,
        *,
        transfer_id: str,
        user_id: str,
        amount: Credits,
        reference: Reference = Reference(),
        metadata: Mapping[str, str] | None = None,
    ) -> TransferResult:
        """An immediately posted debit (a workflow run's price)."""
        transfer_id = _require_id(transfer_id, "transfer_id")
        user_id = _require_id(user_id, "user_id")
        _require_positive(amount)
        meta = dict(metadata or {})
        digest = request_hash(
            "debit",
            user_id=user_id,
            amount=amount.milli,
            reference=[reference.type, reference.id],
            metadata=meta,
        )
        account = wallet_account(user_id)
        wallet = await repo.lock_wallet(session, account, user_id, transfer_id)
        return await self._once(
            session,
            transfer_id,
            digest,
            user_id,
            wallet,
            lambda: self._debit(
                session, transfer_id, user_id, account, wallet, amount, reference, meta, digest
            ),
        )

    async def _debit(
        self,
        session: AsyncSession,
        transfer_id: str,
        user_id: str,
        account: str,
        wallet: Row[Any],
        amount: Credits,
        reference: Reference,
        meta: dict[str, str],
        digest: str,
    ) -> TransferResult:
        if _available(wallet) < amount.milli:
            raise _insufficient(_available(wallet), amount.milli, transfer_id, digest)
        transfer = await self._new_transfer(
            session,
            id=transfer_id,
            kind=Kind.DEBIT.value,
            debit_account=account,
            credit_account=REVENUE,
            amount=amount.milli,
            status=Status.POSTED.value,
            user_id=user_id,
            reference_type=reference.type,
            reference_id=reference.id,
            metadata=meta,
            request_hash=digest,
        )
        await repo.add_usage(session, user_id, transfer.created_at, transfer.metadata, amount.milli, 1)
        wallet = await repo.change_wallet(session, account, posted_debits=amount.milli)
        await repo.change_system(session, REVENUE, user_id, posted_credits=amount.milli)
        balance = await self._balance_changed(session, user_id, wallet, transfer_id)
        return TransferResult(transfer, balance, False)

    async def refund(
        self,
        session: AsyncSession,
        *,
        transfer_id: str,
        original_transfer_id: str,
        amount: Credits,
        reason: str = "",
        metadata: Mapping[str, str] | None = None,
    ) -> TransferResult:
        """Gives back (part of) a posted debit or capture; never more than remains refundable."""
        transfer_id = _require_id(transfer_id, "transfer_id")
        original_transfer_id = _require_id(original_transfer_id, "original_transfer_id")
        _require_positive(amount)
        meta = dict(metadata or {})
        digest = request_hash(
            "refund", original=original_transfer_id, amount=amount.milli, reason=reason, metadata=meta
        )
        original = await repo.get_transfer(session, original_transfer_id)
        if original is None:
            raise NotFound(
                f"no transfer {original_transfer_id!r}",
                code="transfer_not_found",
                transfer_id=original_transfer_id,
            )
        if original.kind not in (Kind.DEBIT, Kind.CAPTURE):
            raise FailedPrecondition(
                "only a debit or a capture can be refunded", code="not_refundable", kind=original.kind
            )
        account = original.debit_account
        wallet = await repo.lock_wallet(session, account, original.user_id, transfer_id)
        return await self._once(
            session,
            transfer_id,
            digest,
            original.user_id,
            wallet,
            lambda: self._refund(session, transfer_id, original, account, amount, reason, meta, digest),
        )

    async def _refund(
        self,
        session: AsyncSession,
        transfer_id: str,
        original: Row[Any],
        account: str,
        amount: Credits,
        reason: str,
        meta: dict[str, str],
        digest: str,
    ) -> TransferResult:
        remaining = int(original.amount) - await repo.refunded_total(session, original.id)
        if amount.milli > remaining:
            raise FailedPrecondition(
                "the refund exceeds what remains refundable",
                code="refund_exceeds_remaining",
                refundable=str(Credits(remaining)),
                requested=str(amount),
            )
        transfer = await self._new_transfer(
            session,
            id=transfer_id,
            kind=Kind.REFUND.value,
            debit_account=REFUNDS,
            credit_account=account,
            amount=amount.milli,
            status=Status.POSTED.value,
            user_id=original.user_id,
            reference_type=original.reference_type,
            reference_id=original.reference_id,
            metadata={**dict(original.metadata or {}), **meta},
            linked_transfer_id=original.id,
            reason=reason,
            request_hash=digest,
        )
        # Refunds count against the work they refund: its hour, model and kind. A charge fully
        # refunded is no longer a charge.
        await repo.add_usage(
            session,
            original.user_id,
            original.created_at,
            original.metadata,
            -amount.milli,
            -1 if remaining == amount.milli else 0,
        )
        wallet = await repo.change_wallet(session, account, posted_credits=amount.milli)
        await repo.change_system(session, REFUNDS, original.user_id, posted_debits=amount.milli)
        balance = await self._balance_changed(session, original.user_id, wallet, transfer_id)
        return TransferResult(
            transfer, balance, False, refundable_remaining=Credits(remaining - amount.milli)
        )

    async def adjust(
        self,
        session: AsyncSession,
        *,
        transfer_id: str,
        user_id: str,
        amount: Credits,
        reason: str,
        actor_id: str,
    ) -> TransferResult:
        """An admin correction, signed; it cannot take the wallet below zero."""
        transfer_id = _require_id(transfer_id, "transfer_id")
        user_id = _require_id(user_id, "user_id")
        if amount.milli == 0:
            raise InvalidArgument("amount must not be zero", code="invalid_amount", field="amount")
        if not reason.strip():
            raise InvalidArgument("an adjustment needs a reason", code="invalid_argument", field="reason")
        actor_id = _require_id(actor_id, "actor_id")
        digest = request_hash(
            "adjust", user_id=user_id, amount=amount.milli, reason=reason, actor_id=actor_id
        )
        account = wallet_account(user_id)
        wallet = await repo.lock_wallet(session, account, user_id, transfer_id)
        return await self._once(
            session,
            transfer_id,
            digest,
            user_id,
            wallet,
            lambda: self._adjust(
                session, transfer_id, user_id, account, wallet, amount, reason, actor_id, digest
            ),
        )

    async def _adjust(
        self,
        session: AsyncSession,
        transfer_id: str,
        user_id: str,
        account: str,
        wallet: Row[Any],
        amount: Credits,
        reason: str,
        actor_id: str,
        digest: str,
    ) -> TransferResult:
        size = abs(amount.milli)
        if amount.milli < 0 and _available(wallet) < size:
            raise _insufficient(_available(wallet), size, transfer_id, digest)
        debit, credit = (ADJUSTMENTS, account) if amount.milli > 0 else (account, ADJUSTMENTS)
        transfer = await self._new_transfer(
            session,
            id=transfer_id,
            kind=Kind.ADJUSTMENT.value,
            debit_account=debit,
            credit_account=credit,
            amount=size,
            status=Status.POSTED.value,
            user_id=user_id,
            reason=reason,
            actor_id=actor_id,
            request_hash=digest,
        )
        if amount.milli > 0:
            wallet = await repo.change_wallet(session, account, posted_credits=size)
            await repo.change_system(session, ADJUSTMENTS, user_id, posted_debits=size)
        else:
            wallet = await repo.change_wallet(session, account, posted_debits=size)
            await repo.change_system(session, ADJUSTMENTS, user_id, posted_credits=size)
        balance = await self._balance_changed(session, user_id, wallet, transfer_id)
        return TransferResult(transfer, balance, False)

    async def record_failure(self, session: AsyncSession, error: TransferRefused) -> None:
        """Remembers a refused transfer id (in its own transaction, after the refusal rolled back)."""
        if error.transfer_id:
            await repo.record_failure(
                session, error.transfer_id, error.code, error.message, error.request_hash
            )

    async def get_transfer(self, session: AsyncSession, transfer_id: str) -> Transfer:
        row = await repo.get_transfer(session, _require_id(transfer_id, "transfer_id"))
        if row is None:
            raise NotFound(f"no transfer {transfer_id!r}", code="transfer_not_found", transfer_id=transfer_id)
        return Transfer.from_row(row)

    # .. reads .......................................................................................

    async def balance(self, session: AsyncSession, user_id: str) -> Balance:
        user_id = _require_id(user_id, "user_id")
        return Balance.from_row(user_id, await repo.get_account(session, wallet_account(user_id)))

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
        size = page_limit(limit)
        keys = await repo.record_keys(session, user_id, wanted, _decode_cursor(cursor), size + 1)
        more = len(keys) > size
        keys = keys[:size]
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
        next_cursor = _encode_cursor(keys[-1].occurred_at, keys[-1].id) if more and keys else ""
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
            for row in await repo.spend_transfers(session, user_id, start, end):
                net = int(row.amount) - int(row.refunded)
                if net <= 0:
                    continue  # fully refunded work is not spend
                meta = row.metadata or {}
                key = key_of(row.created_at, str(meta.get("model") or ""), str(meta.get("kind") or ""))
                spend[key] = spend.get(key, 0) + net
                count[key] = count.get(key, 0) + 1
        buckets = [
            UsageBucket(key, Credits(spend[key]), count[key])
            for key in sorted(spend)
            if spend[key] != 0 or count[key] != 0
        ]
        return Usage(buckets, Credits(sum(spend.values())))

    # .. recharge orders .............................................................................

    async def create_order(
        self,
        session: AsyncSession,
        *,
        order_id: str,
        user_id: str,
        method: str,
        provider: str,
        amount: Money,
        plan_code: str,
        paid_credits: Credits,
        bonus_credits: Credits,
        catalog_version: int,
        expires_at: datetime | None,
    ) -> tuple[RechargeOrder, bool]:
        """Creates a pending order with the credits snapshotted from the catalog's quote."""
        order_id = _require_id(order_id, "order_id")
        user_id = _require_id(user_id, "user_id")
        method = _require_id(method, "method")
        provider = _require_id(provider, "provider")
        if amount.minor <= 0:
            raise InvalidArgument("the amount must be positive", code="invalid_amount", field="amount")
        _require_positive(paid_credits, "paid_credits")
        if bonus_credits.milli < 0:
            raise InvalidArgument("bonus_credits must not be negative", code="invalid_amount")
        digest = request_hash(
            "order",
            user_id=user_id,
            method=method,
            provider=provider,
            amount=[amount.minor, amount.currency],
            plan_code=plan_code,
            paid=paid_credits.milli,
            bonus=bonus_credits.milli,
            catalog_version=catalog_version,
            expires_at=expires_at.isoformat() if expires_at else None,
        )
        row = await repo.insert_order(
            session,
            {
                "id": order_id,
                "user_id": user_id,
                "method": method,
                "provider": provider,
                "amount_minor": amount.minor,
                "currency": amount.currency,
                "plan_code": plan_code,
                "paid_credits": paid_credits.milli,
                "bonus_credits": bonus_credits.milli,
                "catalog_version": catalog_version,
                "status": OrderStatus.PENDING.value,
                "request_hash": digest,
                "trace_id": current_trace_id(),
                "expires_at": expires_at,
            },
        )
        if row is not None:
            metrics.order_reached(session, provider, OrderStatus.PENDING.value)
            return RechargeOrder.from_row(row), False
        existing = await repo.get_order(session, order_id)
        if existing is None or existing.request_hash != digest:
            raise Conflict(
                f"order id {order_id!r} was already used with a different request",
                code="idempotency_conflict",
                order_id=order_id,
            )
        return RechargeOrder.from_row(existing), True

    async def get_order(self, session: AsyncSession, order_id: str, user_id: str = "") -> RechargeOrder:
        row = await repo.get_order(session, _require_id(order_id, "order_id"))
        if row is None or (user_id and row.user_id != user_id):
            raise NotFound(f"no recharge order {order_id!r}", code="order_not_found", order_id=order_id)
        return RechargeOrder.from_row(row)

    async def attach_checkout(
        self, session: AsyncSession, *, order_id: str, provider_checkout_id: str, pay_url: str
    ) -> RechargeOrder:
        order = await repo.get_order(session, _require_id(order_id, "order_id"), lock=True)
        if order is None:
            raise NotFound(f"no recharge order {order_id!r}", code="order_not_found", order_id=order_id)
        if order.status != OrderStatus.PENDING:
            raise FailedPrecondition("the order is no longer pending", code="order_not_pending")
        row = await repo.update_order(
            session, order.id, {"provider_checkout_id": provider_checkout_id, "pay_url": pay_url}
        )
        return RechargeOrder.from_row(row)

    async def complete_order(
        self,
        session: AsyncSession,
        *,
        order_id: str,
        provider_transaction_id: str,
        paid: Money,
        callback_id: str = "",
    ) -> CompletionResult:
        """Credits the paid and bonus credits exactly once (the order row is locked first).

        A late payment of an expired or failed order is still credited: the money was received.
        A payment of another amount or currency raises AmountMismatch and changes nothing; the
        edge records it with `record_mismatch` in its own transaction.
        """
        order_id = _require_id(order_id, "order_id")
        provider_transaction_id = _require_id(provider_transaction_id, "provider_transaction_id")
        order = await repo.get_order(session, order_id, lock=True)
        if order is None:
            raise NotFound(f"no recharge order {order_id!r}", code="order_not_found", order_id=order_id)
        if order.status == OrderStatus.COMPLETED:
            balance = await self.balance(session, order.user_id)
            return CompletionResult(RechargeOrder.from_row(order), True, balance)
        if paid.currency != order.currency or paid.minor != int(order.amount_minor):
            raise AmountMismatch(
                f"paid {paid} but the order asks for {Money(int(order.amount_minor), order.currency)}",
                order_id=order_id,
                paid=str(paid),
            )
        other = await repo.order_by_transaction(session, order.provider, provider_transaction_id)
        if other is not None and other.id != order.id:
            raise FailedPrecondition(
                "this provider transaction already paid another order",
                code="transaction_already_used",
                order_id=other.id,
            )
        reference = Reference("recharge_order", order.id)
        meta = {"provider": order.provider, "currency": order.currency, "method": order.method}
        if callback_id:
            meta["callback_id"] = callback_id
        result = await self.credit(
            session,
            transfer_id=f"recharge:{order.id}",
            user_id=order.user_id,
            amount=Credits(int(order.paid_credits)),
            kind=Kind.RECHARGE,
            reference=reference,
            reason=f"recharge {provider_transaction_id}",
            metadata=meta,
            source_account=payments_account(order.provider, order.currency),
        )
        bonus_id = None
        if int(order.bonus_credits) > 0:
            bonus_id = f"bonus:{order.id}"
            result = await self.credit(
                session,
                transfer_id=bonus_id,
                user_id=order.user_id,
                amount=Credits(int(order.bonus_credits)),
                kind=Kind.BONUS,
                reference=reference,
                reason="recharge bonus",
                metadata=meta,
            )
        row = await repo.update_order(
            session,
            order.id,
            {
                "status": OrderStatus.COMPLETED.value,
                "provider_transaction_id": provider_transaction_id,
                "paid_minor": paid.minor,
                "paid_currency": paid.currency,
                "credit_transfer_id": f"recharge:{order.id}",
                "bonus_transfer_id": bonus_id,
                "completed_at": datetime.now(UTC),
                "failure_reason": "",
            },
        )
        completed = RechargeOrder.from_row(row)
        metrics.order_reached(session, order.provider, OrderStatus.COMPLETED.value)
        event_id = uuid.uuid4()
        await self.outbox.add(
            session,
            PAYMENTS_COMPLETED,
            events_pb2.RechargeCompleted(
                meta=self._meta(event_id),
                order_id=order.id,
                user_id=order.user_id,
                amount=common_pb2.Money(minor=paid.minor, currency=paid.currency),
                paid_credits=common_pb2.Credits(milli=int(order.paid_credits)),
                bonus_credits=common_pb2.Credits(milli=int(order.bonus_credits)),
                total_credits=common_pb2.Credits(milli=int(order.paid_credits) + int(order.bonus_credits)),
            ),
            event_id=event_id,
        )
        return CompletionResult(completed, False, result.balance)

    async def record_mismatch(self, session: AsyncSession, *, order_id: str, reason: str) -> None:
        """Notes a refused completion on the order (its status and the balances stay as they were)."""
        order = await repo.get_order(session, order_id, lock=True)
        if order is not None and order.status != OrderStatus.COMPLETED:
            await repo.update_order(session, order_id, {"failure_reason": reason[:500]})

    async def fail_order(self, session: AsyncSession, *, order_id: str, reason: str) -> RechargeOrder:
        order = await repo.get_order(session, _require_id(order_id, "order_id"), lock=True)
        if order is None:
            raise NotFound(f"no recharge order {order_id!r}", code="order_not_found", order_id=order_id)
        if order.status == OrderStatus.COMPLETED:
            raise FailedPrecondition("the order was already paid", code="order_completed")
        if order.status != OrderStatus.PENDING:
            return RechargeOrder.from_row(order)
        row = await repo.update_order(
            session, order.id, {"status": OrderStatus.FAILED.value, "failure_reason": reason[:500]}
        )
        metrics.order_reached(session, order.provider, OrderStatus.FAILED.value)
        return RechargeOrder.from_row(row)

    async def expire_orders(
        self, session: AsyncSession, *, before: datetime, limit: int = 0
    ) -> list[RechargeOrder]:
        rows = await repo.expire_orders(session, before, page_limit(limit))
        for row in rows:
            metrics.order_reached(session, row.provider, OrderStatus.EXPIRED.value)
        return [RechargeOrder.from_row(row) for row in rows]

    async def pending_orders(
        self,
        session: AsyncSession,
        *,
        created_before: datetime | None,
        provider: str = "",
        cursor: str = "",
        limit: int = 0,
    ) -> tuple[list[RechargeOrder], str]:
        size = page_limit(limit)
        rows = await repo.pending_orders(session, created_before, provider, _decode_cursor(cursor), size + 1)
        orders = [RechargeOrder.from_row(row) for row in rows[:size]]
        next_cursor = _encode_cursor(orders[-1].created_at, orders[-1].id) if len(rows) > size else ""
        return orders, next_cursor

    # .. callbacks ...................................................................................

    async def record_callback(
        self,
        session: AsyncSession,
        *,
        callback_id: str,
        provider: str,
        provider_event_id: str = "",
        order_id: str = "",
        verified: bool,
        outcome: str,
        reason: str = "",
        provider_status: str = "",
        provider_transaction_id: str = "",
        amount: Money | None = None,
        payload_json: str = "{}",
        headers: Mapping[str, str] | None = None,
        remote_addr: str = "",
        received_at: datetime | None = None,
    ) -> CallbackLog:
        callback_id = _require_id(callback_id, "callback_id")
        provider = _require_id(provider, "provider")
        if outcome not in CALLBACK_OUTCOMES:
            raise InvalidArgument("unknown callback outcome", code="invalid_argument", field="outcome")
        try:
            json.loads(payload_json or "{}")
        except ValueError as exc:
            raise InvalidArgument("payload_json is not JSON", code="invalid_argument") from exc
        digest = request_hash(
            "callback",
            provider=provider,
            provider_event_id=provider_event_id,
            order_id=order_id,
            verified=verified,
            outcome=outcome,
            reason=reason,
            provider_status=provider_status,
            provider_transaction_id=provider_transaction_id,
            amount=[amount.minor, amount.currency] if amount else None,
            payload_json=payload_json,
            headers=dict(headers or {}),
            remote_addr=remote_addr,
            received_at=received_at.isoformat() if received_at else None,
        )
        user_id = ""
        if order_id:
            order = await repo.get_order(session, order_id)
            user_id = order.user_id if order is not None else ""
        values: dict[str, Any] = {
            "id": callback_id,
            "provider": provider,
            "provider_event_id": provider_event_id,
            "order_id": order_id,
            "user_id": user_id,
            "verified": verified,
            "outcome": outcome,
            "reason": reason,
            "provider_status": provider_status,
            "provider_transaction_id": provider_transaction_id,
            "amount_minor": amount.minor if amount else None,
            "amount_currency": amount.currency if amount else None,
            "payload_json": payload_json or "{}",
            "headers": dict(headers or {}),
            "remote_addr": remote_addr,
            "trace_id": current_trace_id(),
            "request_hash": digest,
        }
        if received_at is not None:
            values["received_at"] = received_at
        row = await repo.insert_callback(session, values)
        if row is not None:
            metrics.callback_recorded(session, provider, outcome, values["trace_id"])
        else:
            row = await repo.get_callback(session, callback_id)
            if row is None or row.request_hash != digest:
                raise Conflict(
                    f"callback id {callback_id!r} was already used with a different request",
                    code="idempotency_conflict",
                )
        return CallbackLog.from_row(row)

    async def list_callbacks(
        self,
        session: AsyncSession,
        *,
        user_id: str = "",
        order_id: str = "",
        provider: str = "",
        outcome: str = "",
        cursor: str = "",
        limit: int = 0,
    ) -> tuple[list[CallbackLog], str]:
        size = page_limit(limit)
        before: int | None = None
        if cursor:
            try:
                before = int(cursor)
            except ValueError as exc:
                raise InvalidArgument("the cursor is not valid", code="invalid_cursor") from exc
        rows = await repo.list_callbacks(
            session,
            user_id=user_id,
            order_id=order_id,
            provider=provider,
            outcome=outcome,
            before_seq=before,
            limit=size + 1,
        )
        next_cursor = str(rows[size - 1].seq) if len(rows) > size else ""
        return [CallbackLog.from_row(row) for row in rows[:size]], next_cursor

    # .. spend chain and reconciliation .............................................................

    async def spend_chain(self, session: AsyncSession, some_id: str) -> SpendChain:
        """Everything known about a transfer, task, run, message or recharge order id, or a trace id."""
        some_id = _require_id(some_id, "id")
        rows: list[Row[Any]] = []
        reference = Reference()
        transfer = await repo.get_transfer(session, some_id)
        order = await repo.get_order(session, some_id)
        if transfer is not None:
            reference = Reference(transfer.reference_type, transfer.reference_id)
            if not reference.id:
                rows = [transfer, *await repo.transfers_linked_to(session, transfer.id)]
        elif order is not None:
            reference = Reference("recharge_order", order.id)
        else:
            for reference_type in ("task", "run", "message", "recharge_order"):
                if await repo.transfers_by_reference(session, reference_type, some_id):
                    reference = Reference(reference_type, some_id)
                    break
            else:  # a trace id: every transfer the traced request caused
                rows = list(await repo.transfers_by_trace(session, some_id))
        if reference.id and not rows:
            rows = list(await repo.transfers_by_reference(session, reference.type, reference.id))
        if reference.type == "recharge_order" and order is None:
            order = await repo.get_order(session, reference.id)
        if not rows and order is None:
            raise NotFound(f"the ledger knows nothing about {some_id!r}", code="not_found")
        found_callbacks: list[CallbackLog] = []
        if order is not None:
            found_callbacks = [
                CallbackLog.from_row(row)
                for row in await repo.list_callbacks(
                    session,
                    user_id="",
                    order_id=order.id,
                    provider="",
                    outcome="",
                    before_seq=None,
                    limit=200,
                )
            ]
            found_callbacks.reverse()
        chain = [Transfer.from_row(row) for row in rows]
        traces: list[str] = []
        for trace in [t.trace_id for t in chain] + [c.trace_id for c in found_callbacks]:
            if trace and trace not in traces:
                traces.append(trace)
        return SpendChain(
            reference,
            chain,
            RechargeOrder.from_row(order) if order is not None else None,
            found_callbacks,
            traces,
        )

    async def reconcile(
        self, session: AsyncSession, *, now: datetime | None = None, expiry_grace: timedelta = timedelta(0)
    ) -> ReconcileReport:
        """Checks every invariant of the ledger; an empty violation list means healthy.

        `expiry_grace`: a pending hold counts as a violation once it is that long past its expiry
        (the sweeper runs every few seconds, so a hold that just expired is not yet a fault).
        """
        now = now or datetime.now(UTC)
        violations: list[Violation] = []
        rows = await repo.all_accounts(session)
        derived = await repo.balances_from_transfers(session)
        columns = ("posted_credits", "posted_debits", "pending_credits", "pending_debits")
        # A system account's balance is spread over shard rows ("system:revenue#07"); sum them.
        stored: dict[str, dict[str, int]] = {}
        for row in rows:
            totals = stored.setdefault(repo.logical_account(row.id), dict.fromkeys(columns, 0))
            for col in columns:
                totals[col] += int(getattr(row, col))
        posted_sum = sum(t["posted_credits"] - t["posted_debits"] for t in stored.values())
        if posted_sum != 0:
            violations.append(
                Violation("balances_sum_nonzero", "*", f"posted balances sum to {Credits(posted_sum)}")
            )
        pending_gap = sum(t["pending_credits"] - t["pending_debits"] for t in stored.values())
        if pending_gap != 0:
            violations.append(
                Violation("pending_sum_nonzero", "*", f"pending credits − debits = {Credits(pending_gap)}")
            )
        zero = dict.fromkeys(columns, 0)
        for account_id, totals in sorted(stored.items()):
            expected = derived.get(account_id, zero)
            wrong = [
                f"{col} stored {Credits(totals[col])} ≠ transfers {Credits(expected[col])}"
                for col in columns
                if totals[col] != expected[col]
            ]
            if wrong:
                violations.append(Violation("stored_balance_mismatch", account_id, "; ".join(wrong)))
        for row in rows:
            if row.kind == "wallet" and _available(row) < 0:
                violations.append(
                    Violation("wallet_negative", row.id, f"available {Credits(_available(row))}")
                )
        for account_id in sorted(set(derived) - set(stored)):
            violations.append(Violation("account_missing", account_id, "transfers name an unknown account"))
        for hold in await repo.expired_pending_holds(session, now - expiry_grace):
            violations.append(
                Violation("expired_hold_pending", hold.id, f"expired at {hold.expires_at.isoformat()}")
            )
        for hold in await repo.hold_resolution_counts(session):
            violations.append(
                Violation(
                    "hold_resolution",
                    hold.id,
                    f"status {hold.status} with {hold.resolutions} capture/release transfers",
                )
            )
        for original in await repo.over_refunded(session):
            violations.append(
                Violation(
                    "refund_exceeds_original",
                    original.id,
                    f"refunded {Credits(int(original.refunded))} of {Credits(int(original.amount))}",
                )
            )
        credited = await repo.order_credit_transfers(session)
        orders = await repo.all_orders(session)
        for order in orders:
            found = sorted(credited.pop(order.id, []))
            if order.status == OrderStatus.COMPLETED:
                expected_credits = [("recharge", int(order.paid_credits))]
                if int(order.bonus_credits) > 0:
                    expected_credits.append(("bonus", int(order.bonus_credits)))
                expected_credits.sort()
            else:
                expected_credits = []
            if found != expected_credits:
                violations.append(
                    Violation(
                        "order_credit_count",
                        order.id,
                        f"status {order.status}: expected {expected_credits}, found {found}",
                    )
                )
        for order_id, found in credited.items():
            violations.append(Violation("order_credit_count", order_id, f"credits {found} for no order"))
        rolled = await repo.usage_totals(session)
        spent = await repo.spend_totals(session)
        for user in sorted(set(rolled) | set(spent)):
            have, want = rolled.get(user, (0, 0)), spent.get(user, (0, 0))
            if have != want:
                violations.append(
                    Violation(
                        "usage_rollup_mismatch",
                        user,
                        f"rollup spend {Credits(have[0])}, {have[1]} charges ≠ transfers "
                        f"{Credits(want[0])}, {want[1]} charges",
                    )
                )
        return ReconcileReport(
            violations,
            accounts_checked=len(stored),
            transfers_checked=await repo.count_transfers(session),
            orders_checked=len(orders),
            checked_at=now,
        )


def _record_type(kind: Kind) -> str:
    for record_type, kinds in repo.RECORD_KINDS.items():
        if kind in kinds:
            return record_type
    return "consumption"
