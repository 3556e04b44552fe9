"""The ledger's vocabulary, shared by every sub-domain: kinds and statuses, account names, the transfer
and balance values, the refusals, and the checks every mutation makes of its input."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any, TypeVar

from google.protobuf.timestamp_pb2 import Timestamp

from kit.errors import Conflict, FailedPrecondition, InvalidArgument
from kit.money import Credits, Money
from services.ledger import metrics
from services.ledger.repository.records import AccountRecord, StepRecord, TransferRecord

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

V = TypeVar("V", bound="DataclassInstance")

# The name the ledger's transfer log lines have always carried (dashboards and `grep` rely on it).
log = logging.getLogger("services.ledger.service")

BALANCES_CHANGED = "balances.changed"
PAYMENTS_COMPLETED = "payments.completed"

REVENUE = "system:revenue"
BONUS = "system:bonus"
REFUNDS = "system:refunds"
ADJUSTMENTS = "system:adjustments"

DEFAULT_HOLD_TTL = timedelta(hours=2)
# The ledger's page sizes (kit.cursors.page_limit): statements and order lists are read in long pages.
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


CREDIT_KINDS = (Kind.RECHARGE, Kind.BONUS, Kind.GRANT)


def wallet_account(user_id: str) -> str:
    return f"user:{user_id}"


def payments_account(provider: str, currency: str) -> str:
    return f"system:payments:{provider}:{currency}"


def from_record(cls: type[V], record: object, **computed: Any) -> V:
    """A domain value from its stored record: the `computed` fields as given, every other field
    copied from the record's field of the same name."""
    copied = {f.name: getattr(record, f.name) for f in fields(cls) if f.name not in computed}
    return cls(**copied, **computed)


def stored_money(minor: int | None, currency: str | None) -> Money | None:
    """An optional amount as stored (minor units and currency columns): None when either is unset."""
    return Money(int(minor), currency) if currency and minor is not None else None


@dataclass(frozen=True)
class Reference:
    type: str = ""
    id: str = ""


NO_REFERENCE = Reference()


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
    def from_row(cls, row: TransferRecord) -> Transfer:
        return from_record(
            cls,
            row,
            kind=Kind(row.kind),
            amount=Credits(int(row.amount)),
            status=Status(row.status),
            user_id=row.user_id or "",
            reference=Reference(row.reference_type, row.reference_id),
            metadata=dict(row.metadata or {}),
            linked_transfer_id=row.linked_transfer_id or "",
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
    def from_row(cls, user_id: str, row: AccountRecord | StepRecord | None) -> Balance:
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


class _IdTaken(Exception):
    """The transfer id already exists (found by the insert itself)."""


class TransferRefused(FailedPrecondition):
    """A transfer refused for good: the edge records its id (`Ledger.record_failure`) so that a retry
    with the same id is refused again rather than succeeding later."""

    transfer_id: str = ""
    request_hash: str = ""


# -- helpers ---------------------------------------------------------------------------------------


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


@dataclass(frozen=True)
class Charge:
    """A checked request to move credits from a wallet to revenue: a debit, or a hold (`HoldPlan`)."""

    transfer_id: str
    user_id: str
    amount: Credits
    reference: Reference
    metadata: dict[str, str]
    digest: str

    @property
    def account(self) -> str:
        return wallet_account(self.user_id)


def check_charge(
    operation: str,
    transfer_id: str,
    user_id: str,
    amount: Credits,
    reference: Reference,
    metadata: Mapping[str, str] | None,
    **hashed: Any,
) -> Charge:
    """Checks a charge's ids and amount (InvalidArgument) and fixes its digest: `operation`, the
    request's fields and the `hashed` extras."""
    transfer_id = _require_id(transfer_id, "transfer_id")
    user_id = _require_id(user_id, "user_id")
    _require_positive(amount)
    meta = dict(metadata or {})
    digest = request_hash(
        operation,
        user_id=user_id,
        amount=amount.milli,
        reference=[reference.type, reference.id],
        metadata=meta,
        **hashed,
    )
    return Charge(transfer_id, user_id, amount, reference, meta, digest)


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


def _reused(transfer_id: str) -> str:
    return f"transfer id {transfer_id!r} was already used with a different request"


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


def _available(wallet: AccountRecord) -> int:
    return int(wallet.posted_credits) - int(wallet.posted_debits) - int(wallet.pending_debits)


def _timestamp(value: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp
