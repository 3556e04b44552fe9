"""What every sub-domain of the ledger builds on: the outbox it writes `balances.changed` into, the
transfer insert, and exactly-once (`_once`: a retried transfer id replays its first result)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Unpack

from opentelemetry import context as otel_context
from sqlalchemy.ext.asyncio import AsyncSession

from atelier.common.v1 import common_pb2
from atelier.events.v1 import events_pb2
from kit.db import after_commit
from kit.errors import Conflict, DomainError, FailedPrecondition, NotFound
from kit.idempotency import same_request
from kit.money import Credits
from kit.outbox import Outbox, OutboxEvent
from kit.telemetry import current_trace_id
from services.ledger import repository as repo
from services.ledger.repository.records import AccountRecord, WalletRecord
from services.ledger.service.values import (
    BALANCES_CHANGED,
    REVENUE,
    Balance,
    Charge,
    Kind,
    Status,
    Transfer,
    TransferResult,
    _available,
    _committed,
    _IdTaken,
    _insufficient,
    _require_id,
    _reused,
    _taken_meanwhile,
    _timestamp,
    wallet_account,
)


class LedgerCore:
    """The rules' common ground. Holds the outbox it writes `balances.changed` / `payments.completed` into."""

    def __init__(self, outbox: Outbox, *, producer: str = "ledger") -> None:
        self.outbox = outbox
        self.producer = producer

    # .. events ......................................................................................

    async def _book(
        self,
        session: AsyncSession,
        transfer: Transfer,
        wallet_id: str,
        system_id: str,
        **deltas: Unpack[repo.Deltas],
    ) -> Balance:
        """Double entry for `transfer`: the wallet's deltas, mirrored on the counterpart system account
        (`repo.book`); then `balances.changed`."""
        wallet = await repo.book(session, wallet_id, system_id, transfer.user_id, **deltas)
        balance = Balance.from_row(transfer.user_id, wallet)
        await self.outbox.add_many(session, [self._balance_event(balance, transfer.id)])
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

    async def _spend(
        self, session: AsyncSession, charge: Charge, expires_at: datetime | None = None
    ) -> TransferResult:
        """Moves `charge` from its wallet to revenue, exactly once under the wallet's lock: a hold when
        it `expires_at` (pending until captured, released or expired), else a debit (posted at once,
        counted as usage). Refused for good when the available balance cannot cover it."""
        kind, status = (Kind.HOLD, Status.PENDING) if expires_at is not None else (Kind.DEBIT, Status.POSTED)
        amount = charge.amount.milli

        async def apply(account: str, wallet: AccountRecord) -> TransferResult:
            if _available(wallet) < amount:
                raise _insufficient(_available(wallet), amount, charge.transfer_id, charge.digest)
            transfer = await self._new_transfer(
                session,
                id=charge.transfer_id,
                kind=kind.value,
                debit_account=account,
                credit_account=REVENUE,
                amount=amount,
                status=status.value,
                user_id=charge.user_id,
                reference_type=charge.reference.type,
                reference_id=charge.reference.id,
                metadata=charge.metadata,
                expires_at=expires_at,
                request_hash=charge.digest,
            )
            if kind == Kind.HOLD:
                balance = await self._book(session, transfer, account, REVENUE, held=amount)
            else:
                await repo.add_usage(
                    session, charge.user_id, transfer.created_at, transfer.metadata, amount, 1
                )
                balance = await self._book(session, transfer, account, REVENUE, debits=amount)
            return TransferResult(transfer, balance, False)

        return await self._once_on_wallet(session, charge.transfer_id, charge.digest, charge.user_id, apply)

    async def _once_on_wallet(
        self,
        session: AsyncSession,
        transfer_id: str,
        digest: str,
        user_id: str,
        apply: Callable[[str, WalletRecord], Awaitable[TransferResult]],
    ) -> TransferResult:
        """Locks the user's wallet (created on first use), then `_once(apply(account, wallet))`."""
        account = wallet_account(user_id)
        wallet = await repo.lock_wallet(session, account, user_id, transfer_id)
        return await self._once(session, transfer_id, digest, user_id, wallet, lambda: apply(account, wallet))

    async def _once(
        self,
        session: AsyncSession,
        transfer_id: str,
        digest: str,
        user_id: str,
        wallet: WalletRecord,
        apply: Callable[[], Awaitable[TransferResult]],
    ) -> TransferResult:
        """Runs `apply` (its checks, then its writes, the transfer insert first) under the wallet lock.

        The happy path never looks the id up: only when a check fails or the insert finds the id
        taken is the existing transfer compared — same body → the first result, other → conflict.
        """
        if wallet.failed_code is not None:
            if wallet.failed_hash != digest:
                raise Conflict(_reused(transfer_id), code="idempotency_conflict", transfer_id=transfer_id)
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
        self, session: AsyncSession, transfer_id: str, digest: str, user_id: str, wallet: WalletRecord
    ) -> TransferResult | None:
        existing = await repo.get_transfer(session, transfer_id)
        if existing is None:
            return None
        same_request(existing, digest, _reused(transfer_id), transfer_id=transfer_id)
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

    async def get_transfer(self, session: AsyncSession, transfer_id: str) -> Transfer:
        row = await repo.get_transfer(session, _require_id(transfer_id, "transfer_id"))
        if row is None:
            raise NotFound(f"no transfer {transfer_id!r}", code="transfer_not_found", transfer_id=transfer_id)
        return Transfer.from_row(row)

    async def balance(self, session: AsyncSession, user_id: str) -> Balance:
        user_id = _require_id(user_id, "user_id")
        return Balance.from_row(user_id, await repo.get_account(session, wallet_account(user_id)))
