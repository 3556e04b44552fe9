"""The ledger's money counters: once per committed transfer, never for a replay or a rollback, with
the transfer's trace id as exemplar."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from prometheus_client import Counter

from kit.db import Database
from kit.money import Credits, Money
from services.ledger import metrics
from services.ledger.service import Kind, Ledger, Reference
from tests.tracing import traced

C = Credits.whole
NewId = Callable[[str], str]


def value(counter: Counter, *labels: str) -> float:
    child = counter.labels(*labels) if labels else counter
    return float(child._value.get())


def exemplar(counter: Counter, *labels: str) -> dict[str, str]:
    child = counter.labels(*labels) if labels else counter
    found = child._value.get_exemplar()
    assert found is not None
    return dict(found.labels)


async def grant(db: Database, ledger: Ledger, user: str, credits: int) -> None:
    async with db.transaction() as session:
        await ledger.credit(
            session,
            transfer_id=f"fund-{user}",
            user_id=user,
            amount=C(credits),
            kind=Kind.GRANT,
            actor_id="t",
        )


async def test_hold_capture_release_refund_are_counted_once_with_their_trace(
    db: Database, ledger: Ledger, new_id: NewId
) -> None:
    user, model = new_id("u"), new_id("model")
    await grant(db, ledger, user, 20)
    meta = {"model": model, "kind": "image"}
    with traced() as trace_id:
        for _ in range(2):  # the second is an idempotent replay: counts nothing
            async with db.transaction() as session:
                await ledger.hold(
                    session, transfer_id=f"hold-{user}", user_id=user, amount=C(5), metadata=meta
                )
    assert value(metrics.CREDITS_HELD, model) == 5000
    assert exemplar(metrics.CREDITS_HELD, model) == {"trace_id": trace_id}

    with traced() as settled_in:
        for _ in range(2):
            async with db.transaction() as session:
                await ledger.capture(
                    session, transfer_id=f"capture-{user}", hold_id=f"hold-{user}", amount=C(3)
                )
    assert value(metrics.CREDITS_CAPTURED, model) == 3000
    assert exemplar(metrics.CREDITS_CAPTURED, model) == {"trace_id": settled_in}

    refunded = value(metrics.CREDITS_REFUNDED)
    async with db.transaction() as session:
        await ledger.refund(
            session, transfer_id=f"refund-{user}", original_transfer_id=f"capture-{user}", amount=C(1)
        )
    assert value(metrics.CREDITS_REFUNDED) == refunded + 1000

    async with db.transaction() as session:
        await ledger.hold(session, transfer_id=f"hold2-{user}", user_id=user, amount=C(2), metadata=meta)
    async with db.transaction() as session:
        await ledger.release(session, transfer_id=f"release-{user}", hold_id=f"hold2-{user}")
    assert value(metrics.CREDITS_RELEASED, model) == 2000


async def test_a_rolled_back_transfer_counts_nothing(db: Database, ledger: Ledger, new_id: NewId) -> None:
    user, model = new_id("u"), new_id("model")
    await grant(db, ledger, user, 5)

    async def hold_then_fail() -> None:
        async with db.transaction() as session:
            await ledger.hold(
                session, transfer_id=f"hold-{user}", user_id=user, amount=C(1), metadata={"model": model}
            )
            raise RuntimeError("the edge failed after the hold")

    with pytest.raises(RuntimeError):
        await hold_then_fail()
    assert value(metrics.CREDITS_HELD, model) == 0
    async with db.transaction() as session:  # a later commit on a new session does not fire it either
        await ledger.balance(session, user)
    assert value(metrics.CREDITS_HELD, model) == 0


async def test_run_debits_are_captured_under_their_template(
    db: Database, ledger: Ledger, new_id: NewId
) -> None:
    user, template = new_id("u"), new_id("tpl")
    await grant(db, ledger, user, 5)
    async with db.transaction() as session:
        await ledger.debit(
            session,
            transfer_id=f"debit-{user}",
            user_id=user,
            amount=C(2),
            reference=Reference("run", new_id("run")),
            metadata={"kind": "workflow", "template": template},
        )
    assert value(metrics.CREDITS_CAPTURED, f"workflow:{template}") == 2000


async def test_orders_and_callbacks_by_provider(db: Database, ledger: Ledger, new_id: NewId) -> None:
    provider = new_id("prov")
    order_id = new_id("ord")
    user = new_id("u")
    for _ in range(2):  # a replayed create is one order
        async with db.transaction() as session:
            await ledger.create_order(
                session,
                order_id=order_id,
                user_id=user,
                method="alipay",
                provider=provider,
                amount=Money(3000, "CNY"),
                plan_code="",
                paid_credits=C(30),
                bonus_credits=C(0),
                catalog_version=1,
                expires_at=None,
            )
    assert value(metrics.RECHARGE_ORDERS, provider, "pending") == 1
    with traced() as trace_id:
        for _ in range(2):  # the same callback recorded twice is one callback
            async with db.transaction() as session:
                await ledger.record_callback(
                    session,
                    callback_id=f"cb-{order_id}",
                    provider=provider,
                    order_id=order_id,
                    verified=True,
                    outcome="credited",
                )
    async with db.transaction() as session:
        await ledger.complete_order(
            session, order_id=order_id, provider_transaction_id=new_id("txn"), paid=Money(3000, "CNY")
        )
    assert value(metrics.CALLBACKS, provider, "credited") == 1
    assert exemplar(metrics.CALLBACKS, provider, "credited") == {"trace_id": trace_id}
    assert value(metrics.RECHARGE_ORDERS, provider, "completed") == 1
