"""The ledger's rules, pure of transport: each function takes the caller's session, flushes only, and
raises DomainErrors. The edge (servicer, consumer, sweeper) owns the transaction.

Accounts: "user:<id>" wallets (never below zero) and system accounts. Every wallet change locks the
wallet row first (`SELECT … FOR UPDATE`); system rows are touched after it, always in the same order,
so concurrent transfers serialize per wallet and never deadlock.

One room per sub-domain, each a part of `Ledger`: `transfers` (credit, debit, refund, adjust),
`holds` (hold, capture, release, expiry; the general path) with `fast` (their happy path, batched),
`orders` (recharge orders), `callbacks` (the payment callback log), `statements` (records, usage),
`diagnostics` (spend chain, reconciliation); `values` and `core` are what they share.
"""

from services.ledger.service.callbacks import CALLBACK_OUTCOMES, CallbackLog, Callbacks
from services.ledger.service.diagnostics import Diagnostics, ReconcileReport, SpendChain, Violation
from services.ledger.service.fast import Fast, FastLane, FastStep
from services.ledger.service.holds import CapturePlan, HoldPlan
from services.ledger.service.orders import (
    AmountMismatch,
    CompletionResult,
    Orders,
    OrderStatus,
    RechargeOrder,
)
from services.ledger.service.statements import RECORD_TYPES, Record, Statements, Usage, UsageBucket
from services.ledger.service.values import (
    ADJUSTMENTS,
    BALANCES_CHANGED,
    BONUS,
    CREDIT_KINDS,
    DEFAULT_HOLD_TTL,
    DEFAULT_PAGE,
    MAX_PAGE,
    PAYMENTS_COMPLETED,
    REFUNDS,
    REVENUE,
    Balance,
    Kind,
    Reference,
    Status,
    Transfer,
    TransferRefused,
    TransferResult,
    payments_account,
    request_hash,
    wallet_account,
)


class Ledger(Orders, Fast, Callbacks, Statements, Diagnostics):
    """The rules, every sub-domain's. Holds the outbox it writes `balances.changed` /
    `payments.completed` into."""


__all__ = [
    "ADJUSTMENTS",
    "BALANCES_CHANGED",
    "BONUS",
    "CALLBACK_OUTCOMES",
    "CREDIT_KINDS",
    "DEFAULT_HOLD_TTL",
    "DEFAULT_PAGE",
    "MAX_PAGE",
    "PAYMENTS_COMPLETED",
    "RECORD_TYPES",
    "REFUNDS",
    "REVENUE",
    "AmountMismatch",
    "Balance",
    "CallbackLog",
    "CapturePlan",
    "CompletionResult",
    "FastLane",
    "FastStep",
    "HoldPlan",
    "Kind",
    "Ledger",
    "OrderStatus",
    "RechargeOrder",
    "ReconcileReport",
    "Record",
    "Reference",
    "SpendChain",
    "Status",
    "Transfer",
    "TransferRefused",
    "TransferResult",
    "Usage",
    "UsageBucket",
    "Violation",
    "payments_account",
    "request_hash",
    "wallet_account",
]
