"""Holds: a reservation of available credits until it is captured (posted, all or part), released or
expires. The general path, every case step by step under the hold's and the wallet's locks; the
happy path of holds and captures in one server-side call is in `fast.py`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Required, TypedDict, Unpack

from opentelemetry import context as otel_context
from sqlalchemy.ext.asyncio import AsyncSession

from kit.errors import FailedPrecondition, InvalidArgument, NotFound
from kit.money import Credits
from kit.telemetry import current_trace_id
from services.ledger import repository as repo
from services.ledger.repository.records import TransferRecord, WalletRecord
from services.ledger.service.core import LedgerCore
from services.ledger.service.values import (
    DEFAULT_HOLD_TTL,
    NO_REFERENCE,
    Charge,
    Kind,
    Reference,
    Status,
    Transfer,
    TransferResult,
    _require_id,
    _require_positive,
    check_charge,
    request_hash,
)


class HoldRequest(TypedDict, total=False):
    """A hold request, as `plan_hold` checks it (and `Fast.hold` takes it): `expires_at` or `ttl`, or
    neither for the default time to live."""

    transfer_id: Required[str]
    user_id: Required[str]
    amount: Required[Credits]
    expires_at: datetime | None
    ttl: timedelta | None
    reference: Reference
    metadata: Mapping[str, str] | None
    now: datetime | None


class CaptureRequest(TypedDict, total=False):
    """A capture request, as `plan_capture` checks it (and `Fast.capture` takes it): no amount
    captures all of the hold."""

    transfer_id: Required[str]
    hold_id: Required[str]
    amount: Credits | None
    metadata: Mapping[str, str] | None
    now: datetime | None


@dataclass(frozen=True)
class HoldPlan(Charge):
    """A checked hold request, ready to apply (its trace id is the requester's)."""

    expires_at: datetime
    trace_id: str
    trace: otel_context.Context


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


class Holds(LedgerCore):
    """Holds and their resolution, the general path: every case, step by step under the locks."""

    def plan_hold(self, **request: Unpack[HoldRequest]) -> HoldPlan:
        """Checks a hold request (InvalidArgument) and fixes its digest, expiry and trace id."""
        expires_at, ttl = request.get("expires_at"), request.get("ttl")
        charge = check_charge(
            "hold",
            request["transfer_id"],
            request["user_id"],
            request["amount"],
            request.get("reference", NO_REFERENCE),
            request.get("metadata"),
            expires_at=expires_at.isoformat() if expires_at else None,
            ttl=ttl.total_seconds() if ttl else None,
        )
        now = request.get("now") or datetime.now(UTC)
        if expires_at is not None and ttl is not None:
            raise InvalidArgument("give expires_at or ttl, not both", code="invalid_argument", field="ttl")
        if ttl is not None and ttl <= timedelta(0):
            raise InvalidArgument("ttl must be positive", code="invalid_argument", field="ttl")
        if expires_at is not None and expires_at <= now:
            raise InvalidArgument("expires_at is in the past", code="invalid_argument", field="expires_at")
        return HoldPlan(
            **vars(charge),
            expires_at=expires_at or now + (ttl or DEFAULT_HOLD_TTL),
            trace_id=current_trace_id(),
            trace=otel_context.get_current(),
        )

    async def hold_general(self, session: AsyncSession, plan: HoldPlan) -> TransferResult:
        """Every case, step by step under the wallet lock: the result, a replay or the error."""
        return await self._spend(session, plan, plan.expires_at)

    async def _locked_hold(
        self, session: AsyncSession, hold_id: str, transfer_id: str
    ) -> tuple[WalletRecord, TransferRecord]:
        """(wallet, hold), both locked; NotFound for an unknown hold."""
        hold_id = _require_id(hold_id, "hold_id")
        # Hold row first, then its wallet: every path that locks an existing hold does the same.
        hold = await repo.get_transfer(session, hold_id, lock=True)
        if hold is None or hold.kind != Kind.HOLD:
            raise NotFound(f"no hold {hold_id!r}", code="hold_not_found", hold_id=hold_id)
        wallet = await repo.lock_wallet(session, hold.debit_account, hold.owner, transfer_id)
        return wallet, hold

    @staticmethod
    def _require_pending(hold: TransferRecord, now: datetime) -> None:
        status = Status(hold.status)
        if status == Status.POSTED:
            raise FailedPrecondition("the hold was already captured", code="hold_already_captured")
        if status == Status.VOIDED:
            raise FailedPrecondition("the hold was already released", code="hold_already_released")
        if status == Status.EXPIRED or (hold.expires_at is not None and hold.expires_at <= now):
            raise FailedPrecondition("the hold has expired", code="hold_expired")

    def plan_capture(self, **request: Unpack[CaptureRequest]) -> CapturePlan:
        """Checks a capture request (InvalidArgument) and fixes its digest, time and trace id."""
        transfer_id = _require_id(request["transfer_id"], "transfer_id")
        hold_id, amount = request["hold_id"], request.get("amount")
        if amount is not None:
            _require_positive(amount)
        meta = dict(request.get("metadata") or {})
        digest = request_hash(
            "capture", hold_id=hold_id, amount=amount.milli if amount else None, metadata=meta
        )
        hold_id = _require_id(hold_id, "hold_id")
        now = request.get("now") or datetime.now(UTC)
        trace = otel_context.get_current()
        return CapturePlan(transfer_id, hold_id, amount, meta, now, digest, current_trace_id(), trace)

    async def capture_general(self, session: AsyncSession, plan: CapturePlan) -> TransferResult:
        """Every case, step by step under the hold and wallet locks: the result, a replay or the error."""
        wallet, hold = await self._locked_hold(session, plan.hold_id, plan.transfer_id)
        return await self._once(
            session,
            plan.transfer_id,
            plan.digest,
            hold.owner,
            wallet,
            lambda: self._capture(
                session, plan.transfer_id, hold, plan.amount, plan.metadata, plan.now, plan.digest
            ),
        )

    async def _capture(
        self,
        session: AsyncSession,
        transfer_id: str,
        hold: TransferRecord,
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
        transfer = await self._resolving(
            session, hold, transfer_id, Kind.CAPTURE, posted, {**dict(hold.metadata or {}), **meta}, digest
        )
        await repo.add_usage(session, hold.owner, transfer.created_at, transfer.metadata, posted, 1)
        resolved = await repo.resolve_hold(session, hold.id, Status.POSTED.value)
        balance = await self._book(
            session, transfer, hold.debit_account, hold.credit_account, debits=posted, held=-held
        )
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

        return await self._once(session, transfer_id, digest, hold.owner, wallet, apply)

    async def _void(
        self,
        session: AsyncSession,
        hold: TransferRecord,
        transfer_id: str,
        status: Status,
        reason: str,
        digest: str,
    ) -> TransferResult:
        held = int(hold.amount)
        transfer = await self._resolving(
            session, hold, transfer_id, Kind.RELEASE, held, dict(hold.metadata or {}), digest, reason
        )
        resolved = await repo.resolve_hold(session, hold.id, status.value)
        balance = await self._book(session, transfer, hold.debit_account, hold.credit_account, held=-held)
        return TransferResult(transfer, balance, False, Transfer.from_row(resolved))

    async def _resolving(
        self,
        session: AsyncSession,
        hold: TransferRecord,
        transfer_id: str,
        kind: Kind,
        amount: int,
        metadata: dict[str, str],
        digest: str,
        reason: str = "",
    ) -> Transfer:
        """Writes the transfer that resolves `hold` (its capture or release): posted between the hold's
        accounts, for its user and reference, linked to it."""
        return await self._new_transfer(
            session,
            id=transfer_id,
            kind=kind.value,
            debit_account=hold.debit_account,
            credit_account=hold.credit_account,
            amount=amount,
            status=Status.POSTED.value,
            user_id=hold.owner,
            reference_type=hold.reference_type,
            reference_id=hold.reference_id,
            metadata=metadata,
            linked_transfer_id=hold.id,
            reason=reason,
            request_hash=digest,
        )

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
