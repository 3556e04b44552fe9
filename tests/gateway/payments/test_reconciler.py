"""Missed callbacks: the reconciler asks the providers (fake APIs over real HTTP) about orders still
pending after a while and completes the paid ones through the same exactly-once path."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta

import httpx
import pytest

from gateway.payments.base import Answer, OrderView
from gateway.payments.processing import PaymentProcessor, ledger_stub
from gateway.payments.reconciler import Reconciler
from gateway.payments.registry import PaymentGateway
from gateway.payments.stripe_provider import StripeProvider
from kit.money import Money
from tests import identities
from tests.fakes.ledger import FakeLedger
from tests.gateway.payments.fake_providers import ProviderState, build_app
from tests.gateway.payments.fakes import serve_fakes, serve_http
from tests.gateway.payments.signers import Keys, alipay_body, alipay_params, alipay_sign

OLD = timedelta(minutes=30)


@dataclass
class World:
    ledger: FakeLedger
    providers: ProviderState
    processor: PaymentProcessor
    reconciler: Reconciler
    gateway: PaymentGateway


@pytest.fixture
async def world(keys: Keys) -> AsyncIterator[World]:
    # RPCs a fake leaves out answer UNIMPLEMENTED (the generated base); only its stub calls them abstract.
    ledger = FakeLedger()  # type: ignore[abstract]
    state = ProviderState(keys)
    async with serve_fakes(ledger) as address, serve_http(build_app(state)) as base:
        settings = keys.settings(
            alipay_gateway_url=f"{base}/gateway.do",
            wechatpay_api_base=base,
            stripe_api_base=base,
            reconcile_interval_seconds=0,
        )
        async with identities.channel(address) as channel, httpx.AsyncClient(timeout=5) as http:
            gateway = PaymentGateway.from_settings(settings, http)
            processor = PaymentProcessor(gateway, ledger_stub(channel))
            reconciler = Reconciler(processor, pending_after=timedelta(minutes=10), page_size=2)
            yield World(ledger, state, processor, reconciler, gateway)


async def test_reconciler_completes_paid_orders_whose_callback_never_came(world: World) -> None:
    ledger, providers = world.ledger, world.providers
    ledger.seed_order("ro_ali_paid", "alipay", 30000, age=OLD)
    ledger.seed_order("ro_ali_done", "alipay", 30000, age=OLD)
    ledger.seed_order("ro_ali_wait", "alipay", 30000, age=OLD)
    ledger.seed_order("ro_ali_none", "alipay", 30000, age=OLD)
    ledger.seed_order("ro_ali_fresh", "alipay", 30000, age=timedelta(minutes=1))
    ledger.seed_order("ro_wx_paid", "wechatpay", 100000, age=OLD)
    ledger.seed_order("ro_wx_notpay", "wechatpay", 30000, age=OLD)
    ledger.seed_order("ro_wx_short", "wechatpay", 30000, age=OLD)
    ledger.seed_order("ro_wx_none", "wechatpay", 30000, age=OLD)
    ledger.seed_order("ro_st_paid", "stripe", 30000, age=OLD, checkout_id="cs_test_paid")
    providers.alipay.update(
        {
            "ro_ali_paid": ("TRADE_SUCCESS", "300.00"),
            "ro_ali_done": ("TRADE_FINISHED", "300.00"),
            "ro_ali_wait": ("WAIT_BUYER_PAY", "300.00"),
            "ro_ali_fresh": ("TRADE_SUCCESS", "300.00"),
        }
    )
    providers.wechat.update(
        {"ro_wx_paid": ("SUCCESS", 100000), "ro_wx_notpay": ("NOTPAY", 30000), "ro_wx_short": ("SUCCESS", 1)}
    )
    providers.stripe["cs_test_paid"] = {
        "id": "cs_test_paid",
        "object": "checkout.session",
        "client_reference_id": "ro_st_paid",
        "amount_total": 30000,
        "currency": "cny",
        "status": "complete",
        "payment_status": "paid",
        "payment_intent": "pi_123",
    }

    report = await world.reconciler.run_once()

    assert sorted(report.completed) == ["ro_ali_done", "ro_ali_paid", "ro_st_paid", "ro_wx_paid"]
    assert sorted(ledger.credits) == sorted(report.completed)
    assert report.checked == 9  # the fresh order is left to its callback
    assert report.still_pending == 4
    assert list(report.failures) == ["ro_wx_short"]
    assert report.failures["ro_wx_short"].startswith("amount mismatch")
    assert all(call.callback_id == "" for call in ledger.complete_calls)
    assert ledger.orders["ro_st_paid"].provider_transaction_id == "pi_123"
    assert ledger.orders["ro_wx_paid"].provider_transaction_id.startswith("4200001")
    # Every request we sent was signed correctly (the fakes check, as the real APIs do).
    assert providers.seen
    assert all(ok for _, ok in providers.seen)

    again = await world.reconciler.run_once()
    assert again.completed == []
    assert len(ledger.credits) == 4


async def test_reconciler_and_a_late_callback_race_to_one_credit(world: World, keys: Keys) -> None:
    world.ledger.seed_order("ro_race", "alipay", 30000, age=OLD)
    world.providers.alipay["ro_race"] = ("TRADE_SUCCESS", "300.00")
    body = alipay_body(alipay_sign(alipay_params("ro_race", "300.00"), keys.alipay_platform))
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    results = await asyncio.gather(
        world.reconciler.run_once(),
        *(world.processor.handle_callback("alipay", body, headers) for _ in range(5)),
    )
    assert world.ledger.credits == ["ro_race"]
    assert all(isinstance(answer, Answer) and answer.body == b"success" for answer in results[1:])


async def test_stripe_checkout_is_created_once_per_order(world: World) -> None:
    stripe_provider = world.gateway.get("stripe")
    assert isinstance(stripe_provider, StripeProvider)
    order = OrderView(id="ro_card", user_id="u_1", provider="stripe", amount=Money(30000, "CNY"))
    first = await stripe_provider.create_checkout(order)
    second = await stripe_provider.create_checkout(order)
    assert first == second
    assert first.pay_url.startswith("https://checkout.stripe.com/")
    assert list(world.providers.stripe_idempotency) == ["atelier-checkout-ro_card"]
    form = world.providers.stripe[first.provider_checkout_id]["form"]
    assert form["client_reference_id"] == "ro_card"
    assert form["mode"] == "payment"
    assert form["line_items[0][price_data][unit_amount]"] == "30000"
    assert form["line_items[0][price_data][currency]"] == "cny"


async def test_background_loop_completes_and_stops(world: World) -> None:
    world.ledger.seed_order("ro_loop", "wechatpay", 30000, age=OLD)
    world.providers.wechat["ro_loop"] = ("SUCCESS", 30000)
    stop = asyncio.Event()
    task = asyncio.create_task(world.reconciler.run_forever(0.05, stop))
    for _ in range(100):
        if world.ledger.credits:
            break
        await asyncio.sleep(0.02)
    stop.set()
    await asyncio.wait_for(task, timeout=2)
    assert world.ledger.credits == ["ro_loop"]
