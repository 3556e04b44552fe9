"""A hypothesis state machine drives random credits, holds, captures, releases, debits, refunds,
adjustments and retries against the real ledger and a plain model; after every step the balances
match the model and the whole ledger reconciles."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy.ext.asyncio import AsyncSession

from kit.db import Database
from kit.errors import Conflict, DomainError
from kit.money import Credits
from kit.outbox import Outbox
from services.ledger.models import outbox
from services.ledger.service import Kind, Ledger, TransferResult

amounts = st.integers(min_value=1, max_value=8_000)


@dataclass
class Wallet:
    posted: int = 0
    held: int = 0

    @property
    def available(self) -> int:
        return self.posted - self.held


@dataclass
class Model:
    wallets: dict[str, Wallet] = field(default_factory=dict)
    holds: dict[str, tuple[str, int, str]] = field(default_factory=dict)  # id -> (user, amount, state)
    refundable: dict[str, tuple[str, int]] = field(default_factory=dict)  # id -> (user, remaining)
    # Successful requests: (operation name, kwargs) to retry verbatim.
    done: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


def make_machine(loop: asyncio.AbstractEventLoop, db: Database) -> type[RuleBasedStateMachine]:
    ledger = Ledger(Outbox(outbox))

    class LedgerMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.model = Model()
            run = uuid.uuid4().hex[:8]
            self.users = [f"sm-{run}-a", f"sm-{run}-b"]
            for user in self.users:
                self.model.wallets[user] = Wallet()
            self.counter = 0

        def next_id(self, prefix: str) -> str:
            self.counter += 1
            return f"{prefix}-{self.users[0]}-{self.counter}"

        def call(self, operation: str, **kwargs: Any) -> TransferResult | DomainError:
            method: Callable[..., Awaitable[TransferResult]] = getattr(ledger, operation)

            async def go() -> TransferResult | DomainError:
                try:
                    async with db.transaction() as session:
                        return await method(session, **kwargs)
                except DomainError as exc:
                    return exc

            result = loop.run_until_complete(go())
            if isinstance(result, TransferResult):
                self.model.done.append((operation, kwargs))
            return result

        @rule(user=st.sampled_from([0, 1]), amount=amounts)
        def credit(self, user: int, amount: int) -> None:
            uid = self.users[user]
            result = self.call(
                "credit", transfer_id=self.next_id("cr"), user_id=uid, amount=Credits(amount), kind=Kind.GRANT
            )
            assert isinstance(result, TransferResult), result
            self.model.wallets[uid].posted += amount

        @rule(user=st.sampled_from([0, 1]), amount=amounts)
        def hold(self, user: int, amount: int) -> None:
            uid = self.users[user]
            hold_id = self.next_id("h")
            result = self.call("hold", transfer_id=hold_id, user_id=uid, amount=Credits(amount))
            wallet = self.model.wallets[uid]
            if wallet.available >= amount:
                assert isinstance(result, TransferResult), result
                wallet.held += amount
                self.model.holds[hold_id] = (uid, amount, "pending")
            else:
                assert isinstance(result, DomainError)
                assert result.code == "insufficient_balance"

        @precondition(lambda self: bool(self.model.holds))
        @rule(data=st.data(), partial=st.one_of(st.none(), amounts))
        def capture(self, data: st.DataObject, partial: int | None) -> None:
            hold_id = data.draw(st.sampled_from(sorted(self.model.holds)))
            uid, amount, state = self.model.holds[hold_id]
            capture_id = self.next_id("c")
            result = self.call(
                "capture",
                transfer_id=capture_id,
                hold_id=hold_id,
                amount=Credits(partial) if partial is not None else None,
            )
            posted = amount if partial is None else partial
            if state != "pending":
                assert isinstance(result, DomainError)
                assert result.code == f"hold_already_{state}"
            elif posted > amount:
                assert isinstance(result, DomainError)
                assert result.code == "capture_exceeds_hold"
            else:
                assert isinstance(result, TransferResult), result
                wallet = self.model.wallets[uid]
                wallet.held -= amount
                wallet.posted -= posted
                self.model.holds[hold_id] = (uid, amount, "captured")
                self.model.refundable[capture_id] = (uid, posted)

        @precondition(lambda self: bool(self.model.holds))
        @rule(data=st.data())
        def release(self, data: st.DataObject) -> None:
            hold_id = data.draw(st.sampled_from(sorted(self.model.holds)))
            uid, amount, state = self.model.holds[hold_id]
            result = self.call("release", transfer_id=self.next_id("r"), hold_id=hold_id)
            if state != "pending":
                assert isinstance(result, DomainError)
                assert result.code == f"hold_already_{state}"
            else:
                assert isinstance(result, TransferResult), result
                self.model.wallets[uid].held -= amount
                self.model.holds[hold_id] = (uid, amount, "released")

        @rule(user=st.sampled_from([0, 1]), amount=amounts)
        def debit(self, user: int, amount: int) -> None:
            uid = self.users[user]
            debit_id = self.next_id("d")
            result = self.call("debit", transfer_id=debit_id, user_id=uid, amount=Credits(amount))
            wallet = self.model.wallets[uid]
            if wallet.available >= amount:
                assert isinstance(result, TransferResult), result
                wallet.posted -= amount
                self.model.refundable[debit_id] = (uid, amount)
            else:
                assert isinstance(result, DomainError)
                assert result.code == "insufficient_balance"

        @precondition(lambda self: bool(self.model.refundable))
        @rule(data=st.data(), amount=amounts)
        def refund(self, data: st.DataObject, amount: int) -> None:
            original = data.draw(st.sampled_from(sorted(self.model.refundable)))
            uid, remaining = self.model.refundable[original]
            result = self.call(
                "refund",
                transfer_id=self.next_id("rf"),
                original_transfer_id=original,
                amount=Credits(amount),
            )
            if amount <= remaining:
                assert isinstance(result, TransferResult), result
                assert result.refundable_remaining == Credits(remaining - amount)
                self.model.wallets[uid].posted += amount
                self.model.refundable[original] = (uid, remaining - amount)
            else:
                assert isinstance(result, DomainError)
                assert result.code == "refund_exceeds_remaining"

        @rule(
            user=st.sampled_from([0, 1]), amount=st.integers(min_value=-8_000, max_value=8_000).filter(bool)
        )
        def adjust(self, user: int, amount: int) -> None:
            uid = self.users[user]
            result = self.call(
                "adjust",
                transfer_id=self.next_id("a"),
                user_id=uid,
                amount=Credits(amount),
                reason="r",
                actor_id="x",
            )
            wallet = self.model.wallets[uid]
            if amount > 0 or wallet.available >= -amount:
                assert isinstance(result, TransferResult), result
                wallet.posted += amount
            else:
                assert isinstance(result, DomainError)
                assert result.code == "insufficient_balance"

        @precondition(lambda self: bool(self.model.done))
        @rule(data=st.data())
        def retry(self, data: st.DataObject) -> None:
            """A retry of a request that succeeded answers the first result and changes nothing."""
            operation, kwargs = data.draw(st.sampled_from(self.model.done))
            before = len(self.model.done)
            result = self.call(operation, **kwargs)
            assert isinstance(result, TransferResult), result
            assert result.replayed
            self.model.done = self.model.done[:before]

        @precondition(lambda self: bool(self.model.done))
        @rule(data=st.data())
        def reuse_id_with_another_body(self, data: st.DataObject) -> None:
            operation, kwargs = data.draw(st.sampled_from(self.model.done))
            changed = {**kwargs}
            if "reason" in changed:
                changed["reason"] = f"{changed['reason']}!"
            elif "metadata" in self.signature(operation):
                changed["metadata"] = {"other": "body"}
            else:
                return
            result = self.call(operation, **changed)
            assert isinstance(result, Conflict), result
            assert result.code == "idempotency_conflict"

        @staticmethod
        def signature(operation: str) -> set[str]:
            return set(getattr(ledger, operation).__code__.co_varnames)

        @invariant()
        def balances_match_the_model(self) -> None:
            async def read() -> list[tuple[int, int]]:
                async with db.transaction() as session:
                    return [await self._balance(session, user) for user in self.users]

            found = loop.run_until_complete(read())
            expected = [(self.model.wallets[u].posted, self.model.wallets[u].held) for u in self.users]
            assert found == expected

        @staticmethod
        async def _balance(session: AsyncSession, user: str) -> tuple[int, int]:
            balance = await ledger.balance(session, user)
            assert balance.available.milli >= 0
            return balance.posted.milli, balance.held.milli

        @invariant()
        def usage_matches_the_model(self) -> None:
            """Net spend and live charges per user, read whole (the rollup alone) and through a window
            whose bounds fall inside hours (rollup plus partial edge hours from the transfers)."""
            now = datetime.now(UTC)

            async def read(user: str) -> list[list[tuple[str, int, int]]]:
                results = []
                async with db.transaction() as session:
                    for start, end in (
                        (None, None),
                        (now - timedelta(minutes=150), now + timedelta(minutes=7)),
                        (now - timedelta(minutes=3), None),
                    ):
                        usage = await ledger.usage(
                            session, user_id=user, from_time=start, to_time=end, group_by="model"
                        )
                        assert usage.total.milli == sum(b.spend.milli for b in usage.buckets)
                        results.append([(b.key, b.spend.milli, b.count) for b in usage.buckets])
                return results

            for user in self.users:
                live = [left for uid, left in self.model.refundable.values() if uid == user and left > 0]
                expected = [("unknown", sum(live), len(live))] if live else []
                whole, windowed, recent = loop.run_until_complete(read(user))
                assert whole == expected
                assert windowed == expected
                # the last minutes hold a subset of the charges
                assert sum(b[1] for b in recent) <= sum(live)

        @invariant()
        def ledger_reconciles(self) -> None:
            async def check() -> list[Any]:
                async with db.transaction() as session:
                    return (await ledger.reconcile(session)).violations

            assert loop.run_until_complete(check()) == []

    return LedgerMachine


def test_random_operations_keep_every_invariant(private_url: str) -> None:
    loop = asyncio.new_event_loop()
    db = Database(private_url, application_name="atelier-tests")
    try:
        machine = make_machine(loop, db)
        run_state_machine_as_test(
            machine,
            settings=settings(
                max_examples=15,
                stateful_step_count=20,
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
            ),
        )
    finally:
        loop.run_until_complete(db.dispose())
        loop.close()
