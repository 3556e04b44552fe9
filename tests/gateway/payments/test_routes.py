"""The HTTP edge: callbacks through the gateway app into a fake ledger over real gRPC; recharges."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from atelier.ledger.v1 import ledger_pb2
from gateway.payments.base import OrderView
from gateway.payments.sandbox import SandboxProvider
from kit.money import Money
from tests.fakes.ledger import FakeLedger
from tests.gateway.payments.conftest import ALIPAY_FORM, Stack, gateway_over
from tests.gateway.payments.signers import (
    WECHAT_SERIALS,
    Keys,
    alipay_body,
    alipay_params,
    alipay_sign,
    stripe_event,
    stripe_signature,
    wechat_envelope,
    wechat_headers,
    wechat_transaction,
)
from tests.infra import Infra
from tests.tokens import as_user

USER = as_user("u_1")


def _alipay(order_id: str, amount: str, keys: Keys, **overrides: str) -> bytes:
    return alipay_body(alipay_sign(alipay_params(order_id, amount, **overrides), keys.alipay_platform))


async def test_alipay_paid_notification_credits_once_and_is_logged(stack: Stack, keys: Keys) -> None:
    stack.ledger.seed_order("ro_a1", "alipay", 30000)
    reply = await stack.http.post(
        "/callbacks/alipay", content=_alipay("ro_a1", "300.00", keys), headers=ALIPAY_FORM
    )
    assert reply.status_code == 200
    assert reply.text == "success"
    assert stack.ledger.credits == ["ro_a1"]
    completion = stack.ledger.complete_calls[0]
    assert completion.paid.minor == 30000
    assert completion.paid.currency == "CNY"
    assert completion.provider_transaction_id.startswith("2026112522001")
    [logged] = stack.ledger.callbacks
    assert logged.outcome == 1  # CREDITED
    assert logged.verified
    assert logged.callback_id == completion.callback_id
    assert logged.remote_addr == "203.0.113.7"
    assert logged.amount.minor == 30000
    payload = json.loads(logged.payload_json)
    assert "sign" not in payload
    assert payload["out_trade_no"] == "ro_a1"


async def test_ten_duplicate_deliveries_credit_once(stack: Stack, keys: Keys) -> None:
    stack.ledger.seed_order("ro_a2", "alipay", 30000)
    body = _alipay("ro_a2", "300.00", keys)
    answers = [
        (await stack.http.post("/callbacks/alipay", content=body, headers=ALIPAY_FORM)).text
        for _ in range(10)
    ]
    assert answers == ["success"] * 10
    assert stack.ledger.credits == ["ro_a2"]
    assert stack.ledger.outcomes("ro_a2") == ["CREDITED"] + ["DUPLICATE"] * 9


async def test_success_then_finished_credits_once(stack: Stack, keys: Keys) -> None:
    stack.ledger.seed_order("ro_a3", "alipay", 100000)
    for status in ("TRADE_SUCCESS", "TRADE_FINISHED"):
        body = _alipay("ro_a3", "1000.00", keys, trade_status=status)
        assert (
            await stack.http.post("/callbacks/alipay", content=body, headers=ALIPAY_FORM)
        ).text == "success"
    assert stack.ledger.credits == ["ro_a3"]
    assert stack.ledger.outcomes("ro_a3") == ["CREDITED", "DUPLICATE"]


async def test_ten_concurrent_deliveries_credit_once(stack: Stack, keys: Keys) -> None:
    stack.ledger.seed_order("ro_w1", "wechatpay", 30000)
    stack.ledger.seed_order("ro_a4", "alipay", 30000)
    wechat = []
    for i in range(10):
        body = wechat_envelope(wechat_transaction("ro_w1", 30000))
        wechat.append((body, wechat_headers(body, keys.wechat_platform[i % 2], WECHAT_SERIALS[i % 2])))
    alipay = [_alipay("ro_a4", "300.00", keys) for _ in range(10)]
    replies = await asyncio.gather(
        *(stack.http.post("/callbacks/wechatpay", content=b, headers=h) for b, h in wechat),
        *(stack.http.post("/callbacks/alipay", content=b, headers=ALIPAY_FORM) for b in alipay),
    )
    assert [r.status_code for r in replies[:10]] == [204] * 10
    assert [r.text for r in replies[10:]] == ["success"] * 10
    assert sorted(stack.ledger.credits) == ["ro_a4", "ro_w1"]
    for order_id in ("ro_w1", "ro_a4"):
        outcomes = stack.ledger.outcomes(order_id)
        assert outcomes.count("CREDITED") == 1
        assert outcomes.count("DUPLICATE") == 9


@pytest.mark.parametrize(
    ("case", "reason", "answer"),
    [
        ("forged", "bad signature", "failure"),
        ("wrong amount", "amount mismatch", "success"),
        ("unknown order", "unknown order", "success"),
        # Signed by Alipay: acknowledged (a redelivery could not change it), logged, not credited.
        ("wrong seller", "seller_id is not ours", "success"),
        ("closed", "not a payment (TRADE_CLOSED)", "success"),
    ],
)
async def test_alipay_rejections_are_logged_not_credited(
    stack: Stack, keys: Keys, case: str, reason: str, answer: str
) -> None:
    stack.ledger.seed_order("ro_a5", "alipay", 30000)
    if case == "forged":
        body = alipay_body(alipay_sign(alipay_params("ro_a5", "300.00"), keys.stranger))
    elif case == "wrong amount":
        body = _alipay("ro_a5", "299.99", keys)
    elif case == "unknown order":
        body = _alipay("ro_nope", "300.00", keys)
    elif case == "wrong seller":
        body = _alipay("ro_a5", "300.00", keys, seller_id="2088999999999999")
    else:
        body = _alipay("ro_a5", "300.00", keys, trade_status="TRADE_CLOSED")
    reply = await stack.http.post("/callbacks/alipay", content=body, headers=ALIPAY_FORM)
    assert reply.text == answer
    assert stack.ledger.credits == []
    [logged] = stack.ledger.callbacks
    assert logged.reason.startswith(reason)
    expected = "IGNORED" if case == "closed" else "REJECTED"
    assert logged.outcome == {"IGNORED": 3, "REJECTED": 4}[expected]
    assert logged.verified == (case != "forged")


@pytest.mark.parametrize(
    ("case", "status", "reason"),
    [
        ("happy", 204, "credited"),
        ("expired window", 401, "timestamp outside the 5-minute window"),
        ("SIGNTEST probe", 401, "signature probe"),
        ("wrong mchid", 204, "mchid is not ours"),
        ("wrong amount", 204, "amount mismatch"),
        ("NOTPAY", 204, "not a payment (NOTPAY)"),
    ],
)
async def test_wechatpay_callbacks_answer_as_wechat_expects(
    stack: Stack, keys: Keys, case: str, status: int, reason: str
) -> None:
    stack.ledger.seed_order("ro_w2", "wechatpay", 30000)
    overrides: dict[str, object] = {}
    if case == "wrong mchid":
        overrides["mchid"] = "1900000999"
    if case == "NOTPAY":
        overrides["trade_state"] = "NOTPAY"
    total = 3000 if case == "wrong amount" else 30000
    body = wechat_envelope(wechat_transaction("ro_w2", total, **overrides))
    ts = int(time.time()) - 400 if case == "expired window" else None
    headers = wechat_headers(body, keys.wechat_platform[0], WECHAT_SERIALS[0], timestamp=ts)
    if case == "SIGNTEST probe":
        headers["Wechatpay-Signature"] = "WECHATPAY/SIGNTEST/" + headers["Wechatpay-Signature"]
    reply = await stack.http.post("/callbacks/wechatpay", content=body, headers=headers)
    assert reply.status_code == status
    if status == 401:
        assert reply.json()["code"] == "FAIL"
        assert reply.json()["message"].startswith(reason)
    else:
        assert reply.content == b""
    assert stack.ledger.credits == (["ro_w2"] if case == "happy" else [])
    [logged] = stack.ledger.callbacks
    assert logged.reason.startswith(reason)
    assert "Wechatpay-Signature".lower() not in logged.headers
    assert "ciphertext" not in logged.payload_json


@pytest.mark.parametrize(
    ("case", "overrides", "reason"),
    [
        ("wrong currency", {"amount": {"total": 30000, "payer_total": 30000, "currency": "USD"}}, "currency"),
        ("wrong mchid", {"mchid": "1900000999"}, "mchid is not ours"),
        ("wrong appid", {"appid": "wx9999999999999999"}, "appid is not ours"),
    ],
)
async def test_authentic_wechatpay_callbacks_that_are_not_ours_are_acknowledged_not_credited(
    stack: Stack, keys: Keys, case: str, overrides: dict[str, object], reason: str
) -> None:
    """Signed and decrypted, so from WeChat Pay, but not a payment we can credit: answered with the
    success reply (a retry cannot change it), credited nothing, logged as rejected with the reason."""
    order_id = f"ro_w5_{case.replace(' ', '_')}"
    stack.ledger.seed_order(order_id, "wechatpay", 30000)
    body = wechat_envelope(wechat_transaction(order_id, 30000, **overrides))
    headers = wechat_headers(body, keys.wechat_platform[0], WECHAT_SERIALS[0])
    reply = await stack.http.post("/callbacks/wechatpay", content=body, headers=headers)
    assert reply.status_code == 204, reply.text
    assert reply.content == b""
    assert stack.ledger.credits == []
    assert stack.ledger.complete_calls == []
    [logged] = stack.ledger.callbacks
    assert ledger_pb2.CallbackOutcome.Name(logged.outcome) == "CALLBACK_OUTCOME_REJECTED"
    assert logged.reason.startswith(reason), logged.reason
    assert logged.verified, "signature and decryption were good"
    assert logged.order_id == order_id
    # The order is untouched: its genuine payment still credits it.
    genuine = wechat_envelope(wechat_transaction(order_id, 30000))
    paid = await stack.http.post(
        "/callbacks/wechatpay",
        content=genuine,
        headers=wechat_headers(genuine, keys.wechat_platform[0], WECHAT_SERIALS[0]),
    )
    assert paid.status_code == 204
    assert stack.ledger.credits == [order_id]


async def test_stripe_webhook(stack: Stack) -> None:
    stack.ledger.seed_order("ro_s1", "stripe", 30000)
    body = stripe_event("ro_s1", 30000)
    ok = await stack.http.post(
        "/callbacks/stripe", content=body, headers={"Stripe-Signature": stripe_signature(body)}
    )
    assert ok.status_code == 200
    again = await stack.http.post(
        "/callbacks/stripe", content=body, headers={"Stripe-Signature": stripe_signature(body)}
    )
    assert again.status_code == 200
    future = await stack.http.post(
        "/callbacks/stripe",
        content=body,
        headers={"Stripe-Signature": stripe_signature(body, timestamp=int(time.time()) + 3600)},
    )
    assert future.status_code == 400
    assert stack.ledger.credits == ["ro_s1"]
    assert stack.ledger.outcomes("ro_s1") == ["CREDITED", "DUPLICATE", "REJECTED"]
    # The replayed event id was recognised without asking the ledger to complete again.
    assert len(stack.ledger.complete_calls) == 1


async def test_unrecorded_callback_asks_the_provider_to_retry(stack: Stack, keys: Keys) -> None:
    stack.ledger.seed_order("ro_w3", "wechatpay", 30000)
    stack.ledger.fail_records = 1
    body = wechat_envelope(wechat_transaction("ro_w3", 30000))
    headers = wechat_headers(body, keys.wechat_platform[0], WECHAT_SERIALS[0])
    first = await stack.http.post("/callbacks/wechatpay", content=body, headers=headers)
    assert first.status_code == 500
    assert first.json()["code"] == "FAIL"
    retry = await stack.http.post("/callbacks/wechatpay", content=body, headers=headers)
    assert retry.status_code == 204
    assert stack.ledger.credits == ["ro_w3"]
    assert stack.ledger.outcomes("ro_w3") == ["DUPLICATE"]


async def test_sandbox_recharge_end_to_end(stack: Stack) -> None:
    created = await stack.http.post(
        "/v1/billing/recharges",
        json={"method": "sandbox", "amount": "300"},
        headers={**USER, "Idempotency-Key": "k-300"},
    )
    assert created.status_code == 201, created.text
    order = created.json()
    assert order["status"] == "pending"
    assert order["amount"] == {"amount": "300.00", "currency": "CNY"}
    assert (order["paid_credits"], order["bonus_credits"], order["total_credits"]) == ("300", "30", "330")
    assert order["next_step"] == {
        "type": "redirect",
        "url": f"http://gateway.test/sandbox/pay/{order['id']}",
        "code_url": None,
    }

    page = await stack.http.get(f"/sandbox/pay/{order['id']}")
    assert page.status_code == 200
    assert "300.00 CNY" in page.text
    paid = await stack.http.post(f"/sandbox/pay/{order['id']}")
    assert paid.json() == {"order_id": order["id"], "callback_status": 200}

    shown = await stack.http.get(f"/v1/billing/recharges/{order['id']}", headers=USER)
    assert shown.json()["status"] == "completed"
    assert shown.json()["next_step"]["type"] == "none"
    assert stack.ledger.outcomes(order["id"]) == ["CREDITED"]
    # Someone else cannot see it.
    other = await stack.http.get(f"/v1/billing/recharges/{order['id']}", headers=as_user("u_2"))
    assert other.status_code == 404


async def test_recharge_is_idempotent_per_user_and_key(stack: Stack) -> None:
    body = {"method": "sandbox", "amount": "1000"}
    first = await stack.http.post(
        "/v1/billing/recharges", json=body, headers={**USER, "Idempotency-Key": "k1"}
    )
    again = await stack.http.post(
        "/v1/billing/recharges", json=body, headers={**USER, "Idempotency-Key": "k1"}
    )
    other = await stack.http.post(
        "/v1/billing/recharges", json=body, headers={**as_user("u_2"), "Idempotency-Key": "k1"}
    )
    assert first.json()["id"] == again.json()["id"] != other.json()["id"]
    assert first.json()["total_credits"] == "1150"
    assert len(stack.ledger.orders) == 2


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ({"method": "sandbox", "amount": "1000"}, {"method": "sandbox", "amount": "300"}),
        ({"method": "sandbox", "amount": "1000"}, {"method": "sandbox", "plan": "growth"}),
        ({"method": "sandbox", "amount": "1000"}, {"method": "alipay", "amount": "1000"}),
        ({"method": "sandbox", "plan": "growth"}, {"method": "sandbox", "plan": "starter"}),
        ({"method": "sandbox", "plan": "growth"}, {"method": "sandbox", "amount": "499"}),
    ],
)
async def test_a_key_reused_for_another_recharge_is_a_conflict(
    stack: Stack, first: dict[str, str], second: dict[str, str]
) -> None:
    headers = {**USER, "Idempotency-Key": "k-reused"}
    created = await stack.http.post("/v1/billing/recharges", json=first, headers=headers)
    assert created.status_code == 201, created.text
    before = dict(stack.ledger.orders)
    reused = await stack.http.post("/v1/billing/recharges", json=second, headers=headers)
    assert reused.status_code == 409, reused.text
    assert reused.headers["content-type"].startswith("application/problem+json")
    assert reused.json()["code"] == "idempotency_conflict"
    assert stack.ledger.orders == before
    # The same recharge, however its amount is written, is still the first order.
    same = {**first, "amount": f"{first['amount']}.00"} if "amount" in first else first
    again = await stack.http.post("/v1/billing/recharges", json=same, headers=headers)
    assert again.status_code == 201, again.text
    assert again.json()["id"] == created.json()["id"]


@pytest.mark.parametrize(
    ("body", "headers", "status", "code"),
    [
        (
            {"method": "sandbox", "amount": "29.99"},
            {**USER, "Idempotency-Key": "k"},
            409,
            "below_minimum_recharge",
        ),
        ({"method": "sandbox", "amount": "300"}, USER, 400, "idempotency_key_required"),
        ({"method": "sandbox"}, {**USER, "Idempotency-Key": "k"}, 400, "invalid_recharge"),
        ({"method": "sandbox", "amount": "30.001"}, {**USER, "Idempotency-Key": "k"}, 422, "invalid_request"),
        # Full-width and Arabic-Indic digits are not 30 (Python's Decimal and regex \d would say so).
        ({"method": "sandbox", "amount": "３０"}, {**USER, "Idempotency-Key": "k"}, 422, "invalid_request"),
        ({"method": "sandbox", "amount": "٣٠٠"}, {**USER, "Idempotency-Key": "k"}, 422, "invalid_request"),
        (
            {"method": "sandbox", "amount": "3０0.00"},
            {**USER, "Idempotency-Key": "k"},
            422,
            "invalid_request",
        ),
        ({"method": "paypal", "amount": "300"}, {**USER, "Idempotency-Key": "k"}, 422, "invalid_request"),
        ({"method": "sandbox", "amount": "300"}, {"Idempotency-Key": "k"}, 401, "unauthenticated"),
        (
            {"method": "sandbox", "amount": "300"},
            {**as_user("u_1", "unverified"), "Idempotency-Key": "k"},
            403,
            "email_not_verified",
        ),
    ],
)
async def test_bad_recharge_requests_change_nothing(
    stack: Stack, body: dict[str, str], headers: dict[str, str], status: int, code: str
) -> None:
    reply = await stack.http.post("/v1/billing/recharges", json=body, headers=headers)
    assert reply.status_code == status, reply.text
    assert reply.json()["code"] == code
    assert stack.ledger.orders == {}


async def test_plan_recharge(stack: Stack) -> None:
    reply = await stack.http.post(
        "/v1/billing/recharges",
        json={"method": "sandbox", "plan": "growth"},
        headers={**USER, "Idempotency-Key": "p"},
    )
    assert reply.status_code == 201
    assert reply.json()["plan"] == "growth"
    assert reply.json()["amount"]["amount"] == "499.00"


def _delivery(
    provider: str, order_id: str, minor: int, keys: Keys, i: int
) -> tuple[str, bytes, dict[str, str]]:
    """A fresh, correctly signed paid notification for `order_id` as `provider` sends it."""
    if provider == "alipay":
        amount = f"{minor // 100}.{minor % 100:02d}"
        return "/callbacks/alipay", _alipay(order_id, amount, keys), ALIPAY_FORM
    if provider == "wechatpay":
        body = wechat_envelope(wechat_transaction(order_id, minor))
        return (
            "/callbacks/wechatpay",
            body,
            wechat_headers(body, keys.wechat_platform[i % 2], WECHAT_SERIALS[i % 2]),
        )
    if provider == "stripe":
        body = stripe_event(order_id, minor)
        return "/callbacks/stripe", body, {"Stripe-Signature": stripe_signature(body)}
    sandbox = SandboxProvider(keys.settings())
    body, headers = sandbox.signed_callback(OrderView(order_id, "u_1", "sandbox", Money(minor, "CNY")))
    return "/callbacks/sandbox", body, headers


@pytest.mark.parametrize("provider", ["alipay", "wechatpay", "stripe", "sandbox"])
async def test_every_provider_credits_once_under_duplicates_and_concurrency(
    stack: Stack, keys: Keys, provider: str
) -> None:
    order_id = f"ro_dup_{provider}"
    stack.ledger.seed_order(order_id, provider, 30000)
    path, body, headers = _delivery(provider, order_id, 30000, keys, 0)
    duplicates = [await stack.http.post(path, content=body, headers=headers) for _ in range(10)]
    fresh = [_delivery(provider, order_id, 30000, keys, i) for i in range(10)]
    concurrent = await asyncio.gather(*(stack.http.post(p, content=b, headers=h) for p, b, h in fresh))
    assert all(reply.status_code in (200, 204) for reply in duplicates + list(concurrent))
    assert stack.ledger.credits == [order_id]
    outcomes = stack.ledger.outcomes(order_id)
    assert outcomes.count("CREDITED") == 1
    assert outcomes.count("DUPLICATE") == 19


async def test_oversized_callback_is_refused_without_reading_it_all(stack: Stack) -> None:
    reply = await stack.http.post("/callbacks/alipay", content=b"a=" + b"x" * 70_000, headers=ALIPAY_FORM)
    assert reply.status_code == 413
    assert stack.ledger.callbacks == []


async def test_provider_outage_leaves_a_retryable_order(keys: Keys, infra: Infra) -> None:
    # RPCs a fake leaves out answer UNIMPLEMENTED (the generated base); only its stub calls them abstract.
    ledger = FakeLedger()  # type: ignore[abstract]
    # Nothing listens on port 9 of this host: WeChat Pay is "down".
    payments = keys.settings(reconcile_interval_seconds=0, wechatpay_api_base="http://127.0.0.1:9")
    async with gateway_over(infra, payments, ledger) as (_, http):
        reply = await http.post(
            "/v1/billing/recharges",
            json={"method": "wechatpay", "amount": "300"},
            headers={**USER, "Idempotency-Key": "wx-1"},
        )
    assert reply.status_code == 503
    assert reply.json()["code"] == "payment_provider_unavailable"
    [order] = ledger.orders.values()
    assert order.pay_url == ""
    assert order.provider == "wechatpay"


async def test_unrelated_stripe_event_is_ignored_and_acknowledged(stack: Stack) -> None:
    body = json.dumps(
        {
            "id": "evt_other",
            "object": "event",
            "type": "customer.created",
            "livemode": False,
            "data": {"object": {"id": "cus_1", "object": "customer"}},
        }
    ).encode()
    reply = await stack.http.post(
        "/callbacks/stripe", content=body, headers={"Stripe-Signature": stripe_signature(body)}
    )
    assert reply.status_code == 200
    [logged] = stack.ledger.callbacks
    assert logged.outcome == 3  # IGNORED
    assert logged.reason == "not about an order (customer.created)"
