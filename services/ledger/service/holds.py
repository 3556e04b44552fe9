"""Holds: a reservation of available credits until it is captured (posted, all or part), released or
expires. The general path, every case step by step under the hold's and the wallet's locks; the
happy path of holds and captures in one server-side call is in `fast.py`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from opentelemetry import context as otel_context
from sqlalchemy.ext.asyncio import AsyncSession

from kit.errors import FailedPrecondition, InvalidArgument, NotFound
from kit.money import Credits
from kit.telemetry import current_trace_id
from services.ledger import repository as repo
from services.ledger.repository.records import AccountRecord, TransferRecord, WalletRecord
from services.ledger.service.core import LedgerCore
from services.ledger.service.values import (
    DEFAULT_HOLD_TTL,
    NO_REFERENCE,
    REVENUE,
    Kind,
    Reference,
    Status,
    Transfer,
    TransferResult,
    _available,
    _insufficient,
    _require_id,
    _require_positive,
    request_hash,
    wallet_account,
)


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


class Holds(LedgerCore):
    """Holds and their resolution, the general path: every case, step by step under the locks."""

    def plan_hold(
        self,
        *,
        transfer_id: str,
        user_id: str,
        amount: Credits,
        expires_at: datetime | None = None,
        ttl: timedelta | None = None,
        reference: Reference = NO_REFERENCE,
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
        wallet: AccountRecord,
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
        transfer = await self._new_transfer(
            session,
            id=transfer_id,
            kind=Kind.CAPTURE.value,
            debit_account=hold.debit_account,
            credit_account=hold.credit_account,
            amount=posted,
            status=Status.POSTED.value,
            user_id=hold.owner,
            reference_type=hold.reference_type,
            reference_id=hold.reference_id,
            metadata={**dict(hold.metadata or {}), **meta},
            linked_transfer_id=hold.id,
            request_hash=digest,
        )
        await repo.add_usage(session, hold.owner, transfer.created_at, transfer.metadata, posted, 1)
        resolved = await repo.resolve_hold(session, hold.id, Status.POSTED.value)
        wallet = await repo.change_wallet(
            session, hold.debit_account, pending_debits=-held, posted_debits=posted
        )
        await repo.change_system(
            session, hold.credit_account, hold.owner, pending_credits=-held, posted_credits=posted
        )
        balance = await self._balance_changed(session, hold.owner, wallet, transfer_id)
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
        transfer = await self._new_transfer(
            session,
            id=transfer_id,
            kind=Kind.RELEASE.value,
            debit_account=hold.debit_account,
            credit_account=hold.credit_account,
            amount=held,
            status=Status.POSTED.value,
            user_id=hold.owner,
            reference_type=hold.reference_type,
            reference_id=hold.reference_id,
            metadata=dict(hold.metadata or {}),
            linked_transfer_id=hold.id,
            reason=reason,
            request_hash=digest,
        )
        resolved = await repo.resolve_hold(session, hold.id, status.value)
        wallet = await repo.change_wallet(session, hold.debit_account, pending_debits=-held)
        await repo.change_system(session, hold.credit_account, hold.owner, pending_credits=-held)
        balance = await self._balance_changed(session, hold.owner, wallet, transfer_id)
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
