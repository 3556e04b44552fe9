"""The ledger's rules against real PostgreSQL: holds, captures, refunds, idempotency, error paths,
and no overdraft under real concurrency."""

from __future__ import annotations

import asyncio
import importlib.util
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select, text

from kit.db import Database
from kit.errors import Conflict, DomainError, FailedPrecondition, InvalidArgument, NotFound
from kit.money import Credits, Money
from services.ledger.models import outbox, transfers
from services.ledger.service import Balance, Kind, Ledger, Reference, Status

C = Credits.whole
NewId = Callable[[str], str]
MIGRATIONS = Path(__file__).parents[2] / "services/ledger/migrations/versions"


async def fund(db: Database, ledger: Ledger, user: str, credits: int) -> None:
    async with db.transaction() as session:
        await ledger.credit(
            session,
            transfer_id=f"fund-{user}",
            user_id=user,
            amount=C(credits),
            kind=Kind.GRANT,
            actor_id="t",
        )


async def balance(db: Database, ledger: Ledger, user: str) -> Balance:
    async with db.transaction() as session:
        return await ledger.balance(session, user)


async def transfer_count(db: Database, user: str) -> int:
    async with db.transaction() as session:
        return int(
            (
                await session.execute(
                    select(func.count()).select_from(transfers).where(transfers.c.user_id == user)
                )
            ).scalar_one()
        )


async def test_hold_capture_release_move_the_balance(db: Database, ledger: Ledger, new_id: NewId) -> None:
    user = new_id("u")
    await fund(db, ledger, user, 10)
    async with db.transaction() as session:
        held = await ledger.hold(
            session,
            transfer_id=f"hold:{user}:1",
            user_id=user,
            amount=C(4),
            reference=Reference("task", "t1"),
            metadata={"model": "m1", "kind": "image"},
        )
    assert (held.balance.available, held.balance.held, held.balance.posted) == (C(6), C(4), C(10))
    async with db.transaction() as session:
        captured = await ledger.capture(
            session, transfer_id=f"cap:{user}", hold_id=f"hold:{user}:1", amount=C(3)
        )
    assert captured.hold is not None
    assert captured.hold.status == Status.POSTED
    assert captured.transfer.metadata == {"model": "m1", "kind": "image"}
    assert captured.transfer.reference == Reference("task", "t1")
    assert (captured.balance.available, captured.balance.held, captured.balance.posted) == (C(7), C(0), C(7))

    async with db.transaction() as session:
        await ledger.hold(session, transfer_id=f"hold:{user}:2", user_id=user, amount=C(5))
        released = await ledger.release(session, transfer_id=f"rel:{user}", hold_id=f"hold:{user}:2")
    assert released.hold is not None
    assert released.hold.status == Status.VOIDED
    assert (released.balance.available, released.balance.held, released.balance.posted) == (C(7), C(0), C(7))


async def test_every_wallet_change_publishes_balance_changed(
    db: Database, ledger: Ledger, new_id: NewId
) -> None:
    user = new_id("u")
    async with db.transaction() as session:
        before = (
            await session.execute(
                select(func.count()).select_from(outbox).where(outbox.c.subject == "balances.changed")
            )
        ).scalar_one()
    await fund(db, ledger, user, 3)
    async with db.transaction() as session:
        await ledger.hold(session, transfer_id=new_id("h"), user_id=user, amount=C(1))
        after = (
            await session.execute(
                select(func.count()).select_from(outbox).where(outbox.c.subject == "balances.changed")
            )
        ).scalar_one()
    assert after - before >= 2


async def test_same_id_same_body_replays_other_body_conflicts(
    db: Database, ledger: Ledger, new_id: NewId
) -> None:
    user = new_id("u")
    await fund(db, ledger, user, 10)
    args: dict[str, Any] = {"transfer_id": f"debit:{user}", "user_id": user, "amount": C(2)}
    async with db.transaction() as session:
        first = await ledger.debit(session, **args)
    async with db.transaction() as session:
        again = await ledger.debit(session, **args)
    assert again.replayed
    assert again.transfer == first.transfer
    assert again.balance.available == C(8)
    count = await transfer_count(db, user)
    with pytest.raises(Conflict) as caught:
        async with db.transaction() as session:
            await ledger.debit(session, **{**args, "amount": C(3)})
    assert caught.value.code == "idempotency_conflict"
    assert await transfer_count(db, user) == count
    assert (await balance(db, ledger, user)).available == C(8)


async def expect(
    db: Database, ledger: Ledger, user: str, error: type[DomainError], code: str, call: Callable[[Any], Any]
) -> None:
    """`call(session)` fails with `error`/`code` and changes nothing."""
    before = await balance(db, ledger, user)
    count = await transfer_count(db, user)
    with pytest.raises(error) as caught:
        async with db.transaction() as session:
            await call(session)
    assert caught.value.code == code, caught.value
    assert await balance(db, ledger, user) == before
    assert await transfer_count(db, user) == count


async def test_error_paths_change_nothing(db: Database, ledger: Ledger, new_id: NewId) -> None:
    user = new_id("u")
    await fund(db, ledger, user, 5)
    hold_id = f"hold:{user}"
    async with db.transaction() as session:
        await ledger.hold(session, transfer_id=hold_id, user_id=user, amount=C(2))
        await ledger.debit(session, transfer_id=f"debit:{user}", user_id=user, amount=C(1))

    await expect(
        db,
        ledger,
        user,
        NotFound,
        "hold_not_found",
        lambda s: ledger.capture(s, transfer_id=new_id("c"), hold_id="nope"),
    )
    await expect(
        db,
        ledger,
        user,
        NotFound,
        "hold_not_found",
        lambda s: ledger.release(s, transfer_id=new_id("r"), hold_id=f"debit:{user}"),
    )
    await expect(
        db,
        ledger,
        user,
        FailedPrecondition,
        "insufficient_balance",
        lambda s: ledger.hold(s, transfer_id=new_id("h"), user_id=user, amount=C(3)),
    )
    await expect(
        db,
        ledger,
        user,
        FailedPrecondition,
        "insufficient_balance",
        lambda s: ledger.debit(s, transfer_id=new_id("d"), user_id=user, amount=C(3)),
    )
    await expect(
        db,
        ledger,
        user,
        FailedPrecondition,
        "insufficient_balance",
        lambda s: ledger.adjust(
            s, transfer_id=new_id("a"), user_id=user, amount=C(-3), reason="x", actor_id="a"
        ),
    )

    def with_amount(bad: Credits) -> list[Callable[[Any], Any]]:
        return [
            lambda s: ledger.hold(s, transfer_id=new_id("h"), user_id=user, amount=bad),
            lambda s: ledger.debit(s, transfer_id=new_id("d"), user_id=user, amount=bad),
            lambda s: ledger.capture(s, transfer_id=new_id("c"), hold_id=hold_id, amount=bad),
            lambda s: ledger.refund(
                s, transfer_id=new_id("r"), original_transfer_id=f"debit:{user}", amount=bad
            ),
            lambda s: ledger.credit(s, transfer_id=new_id("c"), user_id=user, amount=bad, kind=Kind.GRANT),
        ]

    for bad in (Credits(0), Credits(-1000)):
        for call in with_amount(bad):
            await expect(db, ledger, user, InvalidArgument, "invalid_amount", call)
    await expect(
        db,
        ledger,
        user,
        InvalidArgument,
        "invalid_amount",
        lambda s: ledger.adjust(
            s, transfer_id=new_id("a"), user_id=user, amount=C(0), reason="x", actor_id="a"
        ),
    )
    await expect(
        db,
        ledger,
        user,
        FailedPrecondition,
        "capture_exceeds_hold",
        lambda s: ledger.capture(s, transfer_id=new_id("c"), hold_id=hold_id, amount=C(3)),
    )
    await expect(
        db,
        ledger,
        user,
        FailedPrecondition,
        "refund_exceeds_remaining",
        lambda s: ledger.refund(
            s, transfer_id=new_id("r"), original_transfer_id=f"debit:{user}", amount=C(2)
        ),
    )
    await expect(
        db,
        ledger,
        user,
        NotFound,
        "transfer_not_found",
        lambda s: ledger.refund(s, transfer_id=new_id("r"), original_transfer_id="nope", amount=C(1)),
    )
    await expect(
        db,
        ledger,
        user,
        FailedPrecondition,
        "not_refundable",
        lambda s: ledger.refund(s, transfer_id=new_id("r"), original_transfer_id=hold_id, amount=C(1)),
    )
    await expect(
        db,
        ledger,
        user,
        InvalidArgument,
        "invalid_argument",
        lambda s: ledger.hold(s, transfer_id=" ", user_id=user, amount=C(1)),
    )

    # Double capture, capture after release.
    async with db.transaction() as session:
        await ledger.capture(session, transfer_id=f"cap:{user}", hold_id=hold_id)
    await expect(
        db,
        ledger,
        user,
        FailedPrecondition,
        "hold_already_captured",
        lambda s: ledger.capture(s, transfer_id=new_id("c"), hold_id=hold_id),
    )
    await expect(
        db,
        ledger,
        user,
        FailedPrecondition,
        "hold_already_captured",
        lambda s: ledger.release(s, transfer_id=new_id("r"), hold_id=hold_id),
    )
    async with db.transaction() as session:
        await ledger.hold(session, transfer_id=f"hold2:{user}", user_id=user, amount=C(1))
        await ledger.release(session, transfer_id=f"rel2:{user}", hold_id=f"hold2:{user}")
    await expect(
        db,
        ledger,
        user,
        FailedPrecondition,
        "hold_already_released",
        lambda s: ledger.capture(s, transfer_id=new_id("c"), hold_id=f"hold2:{user}"),
    )
    # A refund never goes beyond the original, across several refunds.
    async with db.transaction() as session:
        partial = await ledger.refund(
            session, transfer_id=f"ref1:{user}", original_transfer_id=f"cap:{user}", amount=Credits(1500)
        )
    assert partial.refundable_remaining == Credits(500)
    await expect(
        db,
        ledger,
        user,
        FailedPrecondition,
        "refund_exceeds_remaining",
        lambda s: ledger.refund(s, transfer_id=new_id("r"), original_transfer_id=f"cap:{user}", amount=C(1)),
    )
    # Idempotency conflict on a capture id reused for another hold.
    await expect(
        db,
        ledger,
        user,
        Conflict,
        "idempotency_conflict",
        lambda s: ledger.capture(s, transfer_id=f"cap:{user}", hold_id=hold_id, amount=C(1)),
    )


async def test_expired_holds_cannot_be_captured_and_are_swept(
    db: Database, ledger: Ledger, new_id: NewId
) -> None:
    user = new_id("u")
    await fund(db, ledger, user, 5)
    now = datetime.now(UTC)
    hold_id = f"hold:{user}"
    async with db.transaction() as session:
        await ledger.hold(session, transfer_id=hold_id, user_id=user, amount=C(2), ttl=timedelta(seconds=30))
    later = now + timedelta(minutes=1)
    await expect(
        db,
        ledger,
        user,
        FailedPrecondition,
        "hold_expired",
        lambda s: ledger.capture(s, transfer_id=new_id("c"), hold_id=hold_id, now=later),
    )
    async with db.transaction() as session:
        due = await ledger.due_holds(session, now=later, limit=1000)
    assert hold_id in due
    async with db.transaction() as session:
        expired = await ledger.expire_hold(session, hold_id, now=later)
    assert expired is not None
    assert expired.status == Status.EXPIRED
    async with db.transaction() as session:
        assert await ledger.expire_hold(session, hold_id, now=later) is None  # exactly once
    assert await balance(db, ledger, user) == Balance(
        user, C(5), C(0), C(5), 3, (await balance(db, ledger, user)).updated_at
    )
    await expect(
        db,
        ledger,
        user,
        FailedPrecondition,
        "hold_expired",
        lambda s: ledger.capture(s, transfer_id=new_id("c"), hold_id=hold_id),
    )
    await expect(
        db,
        ledger,
        user,
        FailedPrecondition,
        "hold_expired",
        lambda s: ledger.release(s, transfer_id=new_id("r"), hold_id=hold_id),
    )


async def test_fifty_concurrent_holds_against_ten_credits(
    db: Database, ledger: Ledger, new_id: NewId
) -> None:
    user = new_id("u")
    await fund(db, ledger, user, 10)

    async def one(i: int) -> bool:
        try:
            async with db.transaction() as session:
                await ledger.hold(session, transfer_id=f"hold:{user}:{i}", user_id=user, amount=C(1))
        except FailedPrecondition as exc:
            if exc.code != "insufficient_balance":
                raise
            return False
        return True

    results = await asyncio.gather(*(one(i) for i in range(50)))
    assert sum(results) == 10
    final = await balance(db, ledger, user)
    assert (final.available, final.held, final.posted) == (C(0), C(10), C(10))


async def test_concurrent_duplicate_completions_credit_once(
    db: Database, ledger: Ledger, new_id: NewId
) -> None:
    user = new_id("u")
    order_id = new_id("order")
    async with db.transaction() as session:
        await ledger.create_order(
            session,
            order_id=order_id,
            user_id=user,
            method="alipay",
            provider="alipay",
            amount=Money(30000, "CNY"),
            plan_code="p300",
            paid_credits=C(300),
            bonus_credits=C(30),
            catalog_version=1,
            expires_at=None,
        )

    async def complete() -> bool:
        async with db.transaction() as session:
            result = await ledger.complete_order(
                session, order_id=order_id, provider_transaction_id="alipay-tx-1", paid=Money(30000, "CNY")
            )
        return not result.already_completed

    results = await asyncio.gather(*(complete() for _ in range(10)))
    assert sum(results) == 1
    final = await balance(db, ledger, user)
    assert final.posted == C(330)
    assert final.available == C(330)


async def test_order_amount_mismatch_is_refused(db: Database, ledger: Ledger, new_id: NewId) -> None:
    user = new_id("u")
    order_id = new_id("order")
    async with db.transaction() as session:
        created, replayed = await ledger.create_order(
            session,
            order_id=order_id,
            user_id=user,
            method="card",
            provider="stripe",
            amount=Money(999, "USD"),
            plan_code="",
            paid_credits=C(50),
            bonus_credits=C(0),
            catalog_version=2,
            expires_at=datetime.now(UTC) + timedelta(minutes=30),
        )
    assert not replayed
    assert created.status == "pending"

    def complete_paying(paid: Money) -> Callable[[Any], Any]:
        return lambda s: ledger.complete_order(
            s, order_id=order_id, provider_transaction_id="pi_1", paid=paid
        )

    for paid in (Money(998, "USD"), Money(999, "CNY")):
        await expect(db, ledger, user, FailedPrecondition, "amount_mismatch", complete_paying(paid))
    async with db.transaction() as session:
        done = await ledger.complete_order(
            session, order_id=order_id, provider_transaction_id="pi_1", paid=Money(999, "USD")
        )
    assert done.order.status == "completed"
    assert done.balance.available == C(50)
    assert done.order.bonus_transfer_id == ""


async def test_unpaid_orders_expire_and_a_late_payment_is_still_credited(
    db: Database, ledger: Ledger, new_id: NewId
) -> None:
    user = new_id("u")
    order_id = new_id("order")
    past = datetime.now(UTC) - timedelta(seconds=1)
    async with db.transaction() as session:
        await ledger.create_order(
            session,
            order_id=order_id,
            user_id=user,
            method="card",
            provider="stripe",
            amount=Money(100, "USD"),
            plan_code="",
            paid_credits=C(7),
            bonus_credits=C(0),
            catalog_version=1,
            expires_at=past,
        )
        pending, _ = await ledger.pending_orders(session, created_before=None, provider="stripe", limit=200)
        assert order_id in [o.id for o in pending]
        expired = await ledger.expire_orders(session, before=datetime.now(UTC), limit=200)
    assert order_id in [o.id for o in expired]
    async with db.transaction() as session:
        done = await ledger.complete_order(
            session, order_id=order_id, provider_transaction_id=new_id("pi"), paid=Money(100, "USD")
        )
    assert done.order.status == "completed"
    assert done.balance.available == C(7)


async def test_usage_counts_net_spend_by_day_model_and_kind(
    db: Database, ledger: Ledger, new_id: NewId
) -> None:
    user = new_id("u")
    await fund(db, ledger, user, 100)
    async with db.transaction() as session:
        for i, (model, kind, price) in enumerate(
            [("seedream", "image", 4), ("veo", "video", 30), ("veo", "video", 10)]
        ):
            hold_id = f"h:{user}:{i}"
            await ledger.hold(
                session,
                transfer_id=hold_id,
                user_id=user,
                amount=C(price),
                reference=Reference("task", f"t{i}"),
                metadata={"model": model, "kind": kind},
            )
            await ledger.capture(session, transfer_id=f"c:{user}:{i}", hold_id=hold_id)
        # A failed task (released) and a fully refunded one never count.
        await ledger.hold(
            session, transfer_id=f"h:{user}:x", user_id=user, amount=C(9), metadata={"model": "veo"}
        )
        await ledger.release(session, transfer_id=f"r:{user}:x", hold_id=f"h:{user}:x")
        await ledger.refund(
            session, transfer_id=f"rf:{user}", original_transfer_id=f"c:{user}:2", amount=C(10)
        )
    async with db.transaction() as session:  # a later transaction: a later statement entry
        await ledger.refund(
            session, transfer_id=f"rf2:{user}", original_transfer_id=f"c:{user}:1", amount=C(5)
        )
        by_model = await ledger.usage(session, user_id=user, from_time=None, to_time=None, group_by="model")
        by_kind = await ledger.usage(session, user_id=user, from_time=None, to_time=None, group_by="kind")
        by_day = await ledger.usage(
            session, user_id=user, from_time=None, to_time=None, group_by="day", time_zone="Asia/Shanghai"
        )
        balance = await ledger.balance(session, user)
        records, _ = await ledger.records(session, user_id=user, types=["refund"])
    assert [(b.key, b.spend, b.count) for b in by_model.buckets] == [("seedream", C(4), 1), ("veo", C(25), 1)]
    assert [(b.key, b.spend) for b in by_kind.buckets] == [("image", C(4)), ("video", C(25))]
    assert by_day.total == C(29)
    assert [b.key for b in by_day.buckets] == [
        datetime.now(UTC).astimezone(ZoneInfo("Asia/Shanghai")).date().isoformat()
    ]
    assert balance.posted == C(100) - by_model.total  # the same data source as the balance
    assert [r.id for r in records] == [f"rf2:{user}", f"rf:{user}"]
    with pytest.raises(InvalidArgument):
        async with db.transaction() as session:
            await ledger.usage(
                session, user_id=user, from_time=None, to_time=None, group_by="day", time_zone="Mars/Base"
            )


async def test_callbacks_are_logged_idempotently(db: Database, ledger: Ledger, new_id: NewId) -> None:
    callback_id = new_id("cb")
    args: dict[str, Any] = {
        "callback_id": callback_id,
        "provider": "alipay",
        "order_id": "unknown-order",
        "verified": False,
        "outcome": "rejected",
        "reason": "bad signature",
        "payload_json": '{"out_trade_no": "x"}',
    }
    async with db.transaction() as session:
        first = await ledger.record_callback(session, **args)
        again = await ledger.record_callback(session, **args)
    assert first == again
    with pytest.raises(Conflict):
        async with db.transaction() as session:
            await ledger.record_callback(session, **{**args, "reason": "other"})
    with pytest.raises(InvalidArgument):
        async with db.transaction() as session:
            await ledger.record_callback(
                session, **{**args, "callback_id": new_id("cb"), "payload_json": "{"}
            )
    async with db.transaction() as session:
        listed, _ = await ledger.list_callbacks(
            session, order_id="unknown-order", outcome="rejected", limit=200
        )
    assert callback_id in [c.id for c in listed]


async def test_the_sweeper_loop_voids_expired_holds(
    db: Database, ledger: Ledger, new_id: NewId, bus: Any
) -> None:
    from kit.service import Runtime
    from kit.settings import ServiceSettings
    from services.ledger.sweeper import sweep

    user = new_id("u")
    await fund(db, ledger, user, 2)
    async with db.transaction() as session:
        await ledger.hold(
            session, transfer_id=f"h:{user}", user_id=user, amount=C(2), ttl=timedelta(milliseconds=50)
        )
    runtime = Runtime("ledger", ServiceSettings(), db, bus, asyncio.Event())
    loop = asyncio.create_task(sweep(runtime, ledger, interval=0.05))
    try:
        for _ in range(100):
            if (await balance(db, ledger, user)).available == C(2):
                break
            await asyncio.sleep(0.05)
    finally:
        runtime.stop.set()
        await loop
    async with db.transaction() as session:
        assert (await ledger.get_transfer(session, f"h:{user}")).status == Status.EXPIRED


async def test_transfers_carry_the_trace_id_and_the_spend_chain_finds_it(
    db: Database, ledger: Ledger, new_id: NewId
) -> None:
    from opentelemetry import trace

    user = new_id("u")
    trace_id = uuid.uuid4().int & ((1 << 128) - 1)
    context = trace.SpanContext(trace_id=trace_id, span_id=0xABCDEF, is_remote=True)
    with trace.use_span(trace.NonRecordingSpan(context)):
        await fund(db, ledger, user, 3)
        async with db.transaction() as session:
            held = await ledger.hold(session, transfer_id=f"h:{user}", user_id=user, amount=C(1))
    assert held.transfer.trace_id == format(trace_id, "032x")
    async with db.transaction() as session:
        chain = await ledger.spend_chain(session, format(trace_id, "032x"))
        with pytest.raises(NotFound):
            await ledger.spend_chain(session, "nothing-known")
    assert [t.id for t in chain.transfers] == [f"fund-{user}", f"h:{user}"]
    assert chain.trace_ids == [format(trace_id, "032x")]


async def test_usage_rollup_matches_the_transfers_and_its_backfill(
    db: Database, ledger: Ledger, new_id: NewId
) -> None:
    """Captures (server-side function), debits and refunds keep `usage_hourly`; a window with bounds
    inside hours reads the same as the whole history; the migration's backfill rebuilds the same rows."""
    spec = importlib.util.spec_from_file_location(
        "usage_migration", MIGRATIONS / "20261125_7b2c9d4e6f10_usage_hourly.py"
    )
    assert spec is not None
    assert spec.loader is not None
    backfill = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(backfill)
    user = new_id("u")
    await fund(db, ledger, user, 100)
    async with db.transaction() as session:
        await ledger.hold(
            session, transfer_id=f"h:{user}", user_id=user, amount=C(7), metadata={"model": "veo"}
        )
        await ledger.capture(session, transfer_id=f"c:{user}", hold_id=f"h:{user}", amount=C(6))
        for i, price in enumerate((3, 5)):
            await ledger.debit(
                session,
                transfer_id=f"d:{user}:{i}",
                user_id=user,
                amount=C(price),
                reference=Reference("run", f"r{i}"),
                metadata={"model": "flow", "kind": "workflow"},
            )
        await ledger.refund(
            session, transfer_id=f"rf:{user}", original_transfer_id=f"d:{user}:0", amount=C(3)
        )
        await ledger.refund(session, transfer_id=f"rf2:{user}", original_transfer_id=f"c:{user}", amount=C(2))
    now = datetime.now(UTC)
    async with db.transaction() as session:
        whole = await ledger.usage(session, user_id=user, from_time=None, to_time=None, group_by="model")
        edged = await ledger.usage(
            session,
            user_id=user,
            from_time=now - timedelta(minutes=61),
            to_time=now + timedelta(minutes=1),
            group_by="model",
        )
        report = await ledger.reconcile(session)
    expected = [("flow", C(5), 1), ("veo", C(4), 1)]
    assert [(b.key, b.spend, b.count) for b in whole.buckets] == expected
    assert [(b.key, b.spend, b.count) for b in edged.buckets] == expected
    assert [v for v in report.violations if v.invariant == "usage_rollup_mismatch"] == []
    rows = (
        "SELECT hour, model, kind, spend_milli, charges FROM usage_hourly WHERE user_id = :u ORDER BY 1, 2, 3"
    )
    async with db.transaction() as session:
        kept = (await session.execute(text(rows), {"u": user})).all()
        await session.execute(text("DELETE FROM usage_hourly WHERE user_id = :u"), {"u": user})
        await session.execute(text(backfill.BACKFILL))
        rebuilt = (await session.execute(text(rows), {"u": user})).all()
        await session.rollback()
    assert kept == rebuilt
    assert len(kept) == 2
