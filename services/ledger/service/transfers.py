"""Posted transfers that move credits at once: credits (recharge, bonus, grant), debits, refunds and
admin adjustments, and the record of a transfer id refused for good."""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy.ext.asyncio import AsyncSession

from kit.errors import FailedPrecondition, InvalidArgument, NotFound
from kit.money import Credits
from services.ledger import repository as repo
from services.ledger.repository.records import AccountRecord, TransferRecord
from services.ledger.service.core import LedgerCore
from services.ledger.service.values import (
    ADJUSTMENTS,
    BONUS,
    CREDIT_KINDS,
    NO_REFERENCE,
    REFUNDS,
    Kind,
    Reference,
    Status,
    TransferRefused,
    TransferResult,
    _available,
    _insufficient,
    _require_id,
    _require_positive,
    check_charge,
    payments_account,
    request_hash,
)


class Transfers(LedgerCore):
    """Credits, debits, refunds and adjustments: each under its wallet's lock, exactly once."""

    async def credit(
        self,
        session: AsyncSession,
        *,
        transfer_id: str,
        user_id: str,
        amount: Credits,
        kind: Kind,
        reference: Reference = NO_REFERENCE,
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
        return await self._once_on_wallet(
            session,
            transfer_id,
            digest,
            user_id,
            lambda account, _: self._credit(
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
        balance = await self._book(session, transfer, account, source_account, credits=amount.milli)
        return TransferResult(transfer, balance, False)

    async def debit(
        self,
        session: AsyncSession,
        *,
        transfer_id: str,
        user_id: str,
        amount: Credits,
        reference: Reference = NO_REFERENCE,
        metadata: Mapping[str, str] | None = None,
    ) -> TransferResult:
        """An immediately posted debit (a workflow run's price)."""
        return await self._spend(
            session, check_charge("debit", transfer_id, user_id, amount, reference, metadata)
        )

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
        wallet = await repo.lock_wallet(session, account, original.owner, transfer_id)
        return await self._once(
            session,
            transfer_id,
            digest,
            original.owner,
            wallet,
            lambda: self._refund(session, transfer_id, original, account, amount, reason, meta, digest),
        )

    async def _refund(
        self,
        session: AsyncSession,
        transfer_id: str,
        original: TransferRecord,
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
            user_id=original.owner,
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
            original.owner,
            original.created_at,
            original.metadata,
            -amount.milli,
            -1 if remaining == amount.milli else 0,
        )
        balance = await self._book(session, transfer, account, REFUNDS, credits=amount.milli)
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
        return await self._once_on_wallet(
            session,
            transfer_id,
            digest,
            user_id,
            lambda account, wallet: self._adjust(
                session, transfer_id, user_id, account, wallet, amount, reason, actor_id, digest
            ),
        )

    async def _adjust(
        self,
        session: AsyncSession,
        transfer_id: str,
        user_id: str,
        account: str,
        wallet: AccountRecord,
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
            balance = await self._book(session, transfer, account, ADJUSTMENTS, credits=size)
        else:
            balance = await self._book(session, transfer, account, ADJUSTMENTS, debits=size)
        return TransferResult(transfer, balance, False)

    async def record_failure(self, session: AsyncSession, error: TransferRefused) -> None:
        """Remembers a refused transfer id (in its own transaction, after the refusal rolled back)."""
        if error.transfer_id:
            await repo.record_failure(
                session, error.transfer_id, error.code, error.message, error.request_hash
            )
