"""For operators: the spend chain of any id (everything the ledger knows about it) and the
reconciliation of every invariant of the books."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from kit.errors import NotFound
from kit.money import Credits
from services.ledger import repository as repo
from services.ledger.repository.records import TransferRecord
from services.ledger.service.callbacks import CallbackLog
from services.ledger.service.core import LedgerCore
from services.ledger.service.orders import OrderStatus, RechargeOrder
from services.ledger.service.values import Reference, Transfer, _available, _require_id


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


class Diagnostics(LedgerCore):
    """Spend chains and reconciliation."""

    async def spend_chain(self, session: AsyncSession, some_id: str) -> SpendChain:
        """Everything known about a transfer, task, run, message or recharge order id, or a trace id."""
        some_id = _require_id(some_id, "id")
        rows: list[TransferRecord] = []
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
        for resolved in await repo.hold_resolution_counts(session):
            violations.append(
                Violation(
                    "hold_resolution",
                    resolved.id,
                    f"status {resolved.status} with {resolved.resolutions} capture/release transfers",
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
