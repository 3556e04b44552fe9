"""Stripe (Visa / MasterCard) through the official SDK: Checkout Sessions and signed webhooks.

Webhooks are verified by `stripe.Webhook.construct_event` (HMAC-SHA256 of `t.body` with the endpoint
secret, constant-time, 300 s tolerance for old timestamps); the SDK accepts any future timestamp, so
one more than the tolerance ahead is refused here. Sessions are created with an idempotency key
derived from our order id, so a retried recharge never opens a second session.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import stripe
from stripe.params.checkout import SessionCreateParams

from gateway.payments.base import (
    Ack,
    Answer,
    Checkout,
    OrderView,
    ProviderError,
    QueryResult,
    Rejected,
    Verdict,
    Verified,
    header,
    json_object,
)
from gateway.payments.settings import PaymentSettings
from kit.money import CURRENCY_EXPONENT, Money
from kit.text import ascii_digits

NAME = "stripe"
# Paid once payment_status is "paid"; async methods report success in a later event.
PAYMENT_EVENTS = frozenset({"checkout.session.completed", "checkout.session.async_payment_succeeded"})


def signature_timestamp(signature_header: str) -> int | None:
    for item in signature_header.split(","):
        key, _, value = item.strip().partition("=")
        if key == "t":
            return int(value) if ascii_digits(value) else None
    return None


class StripeProvider:
    name = NAME

    def __init__(self, settings: PaymentSettings, client: stripe.StripeClient | None = None) -> None:
        self.webhook_secret = settings.stripe_webhook_secret.get_secret_value()
        self.tolerance = settings.stripe_tolerance_seconds
        self.livemode = settings.stripe_livemode
        self.success_url = settings.site_url("/billing?recharge={CHECKOUT_SESSION_ID}")
        self.cancel_url = settings.site_url("/billing")
        self.client = client or stripe.StripeClient(
            settings.stripe_secret_key.get_secret_value(),
            base_addresses={"api": settings.stripe_api_base},
            http_client=stripe.HTTPXClient(),
            max_network_retries=2,
        )

    async def create_checkout(self, order: OrderView) -> Checkout:
        try:
            params: SessionCreateParams = {
                "mode": "payment",
                "client_reference_id": order.id,
                "metadata": {"order_id": order.id, "user_id": order.user_id},
                "line_items": [
                    {
                        "quantity": 1,
                        "price_data": {
                            "currency": order.amount.currency.lower(),
                            "unit_amount": order.amount.minor,
                            "product_data": {"name": order.description},
                        },
                    }
                ],
                "success_url": self.success_url,
                "cancel_url": self.cancel_url,
            }
            session = await self.client.v1.checkout.sessions.create_async(
                params, {"idempotency_key": f"atelier-checkout-{order.id}"}
            )
        except stripe.StripeError as exc:
            raise ProviderError(f"Stripe checkout session failed: {type(exc).__name__}") from exc
        if not session.url:
            raise ProviderError("Stripe returned a session without a URL")
        return Checkout(provider_checkout_id=session.id, pay_url=session.url, next_step="redirect")

    async def query(self, order: OrderView) -> QueryResult:
        if not order.provider_checkout_id:
            return QueryResult(paid=False, provider_status="no_session")
        try:
            session = await self.client.v1.checkout.sessions.retrieve_async(order.provider_checkout_id)
        except stripe.StripeError as exc:
            raise ProviderError(f"Stripe session retrieve failed: {type(exc).__name__}") from exc
        data = session.to_dict()
        if _order_id(data) != order.id:
            raise ProviderError("Stripe session belongs to another order")
        return QueryResult(
            paid=data.get("status") == "complete" and data.get("payment_status") == "paid",
            provider_status=f"{data.get('status')}/{data.get('payment_status')}",
            transaction_id=_transaction_id(data),
            amount=_amount(data),
        )

    def verify(self, body: bytes, headers: Mapping[str, str], now: float) -> Verdict:
        signature = header(headers, "Stripe-Signature")
        envelope = json_object(body)
        event_id = str(envelope.get("id", ""))

        # Before verification these are only claims, kept so the callback log can show them.
        claimed = envelope.get("data", {}).get("object", {}) if isinstance(envelope.get("data"), dict) else {}
        claimed_order = _order_id(claimed) if isinstance(claimed, dict) else ""
        claimed_type = str(envelope.get("type", ""))

        def reject(
            reason: str, order_id: str = claimed_order, status: str = claimed_type, *, authentic: bool = False
        ) -> Rejected:
            return Rejected(NAME, reason, event_id, order_id, status, envelope, authentic=authentic)

        timestamp = signature_timestamp(signature)
        if timestamp is None:
            return reject("missing or malformed Stripe-Signature")
        try:
            event = stripe.Webhook.construct_event(
                body, signature, self.webhook_secret, tolerance=self.tolerance
            )
        except stripe.SignatureVerificationError as exc:
            reason = "timestamp outside the tolerance" if "tolerance" in str(exc) else "bad signature"
            return reject(reason)
        except ValueError:
            return reject("body is not a Stripe event")
        if timestamp > now + self.tolerance:
            # The SDK only refuses old timestamps; a far-future one is a replay being prepared.
            return reject("timestamp is in the future")
        # Signed with our endpoint secret from here on: a refusal is acknowledged (2xx), as
        # redelivery cannot change it.
        data = event.to_dict()
        event_type = str(data.get("type", ""))
        session = data.get("data", {}).get("object", {})
        if not isinstance(session, dict):
            return reject("event has no object", status=event_type, authentic=True)
        if bool(data.get("livemode")) != self.livemode:
            return reject("livemode does not match this deployment", status=event_type, authentic=True)
        order_id = _order_id(session)
        if not event_type.startswith("checkout.session."):
            # Verified, but not about a checkout: logged and ignored.
            return Verified(NAME, event_id, order_id, event_type, False, "", None, envelope)
        if not order_id:
            return reject("session has no client_reference_id", status=event_type, authentic=True)
        amount = _amount(session)
        if amount is None:
            return reject("session amount or currency is not supported", order_id, event_type, authentic=True)
        paid = event_type in PAYMENT_EVENTS and session.get("payment_status") == "paid"
        return Verified(
            NAME, event_id, order_id, event_type, paid, _transaction_id(session), amount, envelope
        )

    def answer(self, ack: Ack, reason: str) -> Answer:
        if ack is Ack.ACCEPTED:
            return Answer(200, b'{"received":true}', "application/json")
        status = 400 if ack is Ack.UNAUTHENTIC else 500
        return Answer(status, json.dumps({"error": reason}).encode(), "application/json")


def _order_id(session: Mapping[str, Any]) -> str:
    reference = session.get("client_reference_id")
    if isinstance(reference, str) and reference:
        return reference
    metadata = session.get("metadata")
    if isinstance(metadata, dict) and isinstance(metadata.get("order_id"), str):
        return str(metadata["order_id"])
    return ""


def _transaction_id(session: Mapping[str, Any]) -> str:
    intent = session.get("payment_intent")
    if isinstance(intent, dict):
        intent = intent.get("id")
    return intent if isinstance(intent, str) and intent else str(session.get("id", ""))


def _amount(session: Mapping[str, Any]) -> Money | None:
    total = session.get("amount_total")
    currency = str(session.get("currency") or "").upper()
    if (
        not isinstance(total, int)
        or isinstance(total, bool)
        or total < 0
        or currency not in CURRENCY_EXPONENT
    ):
        return None
    return Money(total, currency)
