"""The ledger's domain metrics: money moved, recharge orders and payment callbacks.

Counted once per committed row (`kit.db.after_commit`): a replayed idempotent request or a rolled-back
transaction counts nothing. Credits are milli-credits; counters that move money carry an exemplar with
the trace id stored on the transfer, so a dashboard point opens the trace that caused it.
"""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import Counter, Histogram
from sqlalchemy.ext.asyncio import AsyncSession

from kit.db import after_commit

CREDITS_HELD = Counter("atelier_credits_held_milli", "Milli-credits reserved by holds", ["model"])
CREDITS_CAPTURED = Counter(
    "atelier_credits_captured_milli",
    "Milli-credits charged: captured holds and posted debits (workflow runs)",
    ["model"],
)
CREDITS_RELEASED = Counter(
    "atelier_credits_released_milli", "Milli-credits of holds released or expired unused", ["model"]
)
CREDITS_REFUNDED = Counter("atelier_credits_refunded_milli", "Milli-credits refunded after a charge")
CREDITS_GRANTED = Counter(
    "atelier_credits_granted_milli",
    "Milli-credits credited to wallets: paid recharges, bonuses and grants",
    ["kind"],
)
RECHARGE_ORDERS = Counter(
    "atelier_recharge_orders", "Recharge orders by the status they reached", ["provider", "status"]
)
BATCH_SIZE = Histogram(
    "atelier_ledger_batch_size",
    "Holds and captures committed together by one group commit",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128),
)
BATCH_ROLLBACKS = Counter(
    "atelier_ledger_batch_rollbacks", "Group commits rolled back (their requests then went one by one)"
)
CALLBACKS = Counter(
    "atelier_callbacks", "Payment callbacks recorded, by provider and outcome", ["provider", "outcome"]
)


def model_of(metadata: Mapping[str, str]) -> str:
    """The `model` label of a charge: the task's model, `workflow:<template>` for a run's debit."""
    if metadata.get("model"):
        return metadata["model"]
    if metadata.get("template"):
        return f"workflow:{metadata['template']}"
    return "unknown"


def _exemplar(trace_id: str) -> dict[str, str] | None:
    return {"trace_id": trace_id} if trace_id else None


def count_transfer(kind: str, amount_milli: int, metadata: Mapping[str, str], trace_id: str) -> None:
    """Counts a transfer; called once its transaction committed."""
    exemplar = _exemplar(trace_id)
    if kind == "hold":
        CREDITS_HELD.labels(model_of(metadata)).inc(amount_milli, exemplar=exemplar)
    elif kind in ("capture", "debit"):
        CREDITS_CAPTURED.labels(model_of(metadata)).inc(amount_milli, exemplar=exemplar)
    elif kind == "release":
        CREDITS_RELEASED.labels(model_of(metadata)).inc(amount_milli, exemplar=exemplar)
    elif kind == "refund":
        CREDITS_REFUNDED.inc(amount_milli, exemplar=exemplar)
    elif kind in ("recharge", "bonus", "grant"):
        CREDITS_GRANTED.labels(kind).inc(amount_milli, exemplar=exemplar)


def order_reached(session: AsyncSession, provider: str, status: str) -> None:
    after_commit(session, lambda: RECHARGE_ORDERS.labels(provider, status).inc())


def callback_recorded(session: AsyncSession, provider: str, outcome: str, trace_id: str) -> None:
    exemplar = _exemplar(trace_id)
    after_commit(session, lambda: CALLBACKS.labels(provider, outcome).inc(exemplar=exemplar))
