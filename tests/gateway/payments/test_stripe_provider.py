"""Stripe webhooks: the official SDK verifies the HMAC; we add the future-timestamp check."""

from __future__ import annotations

import json
import time

import pytest
import stripe

from gateway.payments.base import Ack, Rejected, Verified
from gateway.payments.settings import PaymentSettings
from gateway.payments.stripe_provider import StripeProvider
from kit.money import Money
from tests.gateway.payments.signers import STRIPE_WEBHOOK_SECRET, stripe_event, stripe_signature


@pytest.fixture(scope="module")
def provider(payment_settings: PaymentSettings) -> StripeProvider:
    return StripeProvider(payment_settings)


def test_our_header_matches_the_sdk_generator() -> None:
    body = stripe_event("ro_1", 30000)
    now = int(time.time())
    sdk = stripe.WebhookSignature.generate_signature_header(
        body.decode(), STRIPE_WEBHOOK_SECRET, timestamp=now
    )
    assert stripe_signature(body, timestamp=now) == sdk


def test_completed_paid_session_is_verified(provider: StripeProvider) -> None:
    body = stripe_event("ro_1", 30000)
    verdict = provider.verify(body, {"Stripe-Signature": stripe_signature(body)}, time.time())
    assert isinstance(verdict, Verified), verdict
    assert verdict.paid
    assert verdict.order_id == "ro_1"
    assert verdict.amount == Money(30000, "CNY")
    assert verdict.transaction_id.startswith("pi_")
    assert verdict.event_id == json.loads(body)["id"]


def test_several_v1_signatures_any_may_match(provider: StripeProvider) -> None:
    body = stripe_event("ro_1", 30000)
    header = stripe_signature(body)
    t, v1 = header.split(",")
    verdict = provider.verify(body, {"Stripe-Signature": f"{t},v1={'0' * 64},{v1}"}, time.time())
    assert isinstance(verdict, Verified)


@pytest.mark.parametrize(
    ("event_type", "session"),
    [
        ("checkout.session.completed", {"payment_status": "unpaid"}),
        ("checkout.session.expired", {"payment_status": "unpaid", "status": "expired"}),
        ("checkout.session.async_payment_failed", {"payment_status": "unpaid"}),
    ],
)
def test_unpaid_sessions_are_verified_but_not_paid(
    provider: StripeProvider, event_type: str, session: dict[str, str]
) -> None:
    body = stripe_event("ro_1", 30000, event_type=event_type, **session)
    verdict = provider.verify(body, {"Stripe-Signature": stripe_signature(body)}, time.time())
    assert isinstance(verdict, Verified)
    assert not verdict.paid


def test_async_payment_succeeded_is_paid(provider: StripeProvider) -> None:
    body = stripe_event("ro_1", 30000, event_type="checkout.session.async_payment_succeeded")
    verdict = provider.verify(body, {"Stripe-Signature": stripe_signature(body)}, time.time())
    assert isinstance(verdict, Verified)
    assert verdict.paid


def _case(case: str) -> tuple[bytes, str]:
    now = int(time.time())
    body = stripe_event("ro_1", 30000)
    if case == "wrong secret":
        return body, stripe_signature(body, "whsec_someone_else")
    if case == "tampered body":
        return body.replace(b"30000", b"30001"), stripe_signature(body)
    if case == "expired":
        return body, stripe_signature(body, timestamp=now - 301)
    if case == "future":
        return body, stripe_signature(body, timestamp=now + 301)
    if case == "missing header":
        return body, ""
    if case == "superscript timestamp":
        return body, stripe_signature(body).replace("t=", "t=\u00b2", 1)
    if case == "v0 scheme only":
        return body, stripe_signature(body).replace("v1=", "v0=")
    if case == "livemode event":
        live = json.loads(body)
        live["livemode"] = True
        raw = json.dumps(live).encode()
        return raw, stripe_signature(raw)
    if case == "unsupported currency":
        raw = stripe_event("ro_1", 30000, currency="eur")
        return raw, stripe_signature(raw)
    raise AssertionError(case)


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("wrong secret", "bad signature"),
        ("tampered body", "bad signature"),
        ("expired", "timestamp outside the tolerance"),
        ("future", "timestamp is in the future"),
        ("missing header", "missing or malformed Stripe-Signature"),
        ("superscript timestamp", "missing or malformed Stripe-Signature"),
        ("v0 scheme only", "bad signature"),
        ("livemode event", "livemode does not match"),
        ("unsupported currency", "session amount or currency is not supported"),
    ],
)
def test_forged_and_stale_webhooks_are_rejected(provider: StripeProvider, case: str, reason: str) -> None:
    body, header = _case(case)
    verdict = provider.verify(body, {"Stripe-Signature": header} if header else {}, time.time())
    assert isinstance(verdict, Rejected), verdict
    assert verdict.reason.startswith(reason)
    assert verdict.authentic == (case in {"livemode event", "unsupported currency"})


def test_answers(provider: StripeProvider) -> None:
    assert provider.answer(Ack.ACCEPTED, "").status_code == 200
    assert provider.answer(Ack.UNAUTHENTIC, "bad signature").status_code == 400
    assert provider.answer(Ack.RETRY, "ledger down").status_code == 500
