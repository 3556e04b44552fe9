"""The sandbox provider, the embedded default: a checkout page that plays the payer.

Its payer signs callbacks like Stripe does (HMAC-SHA256 of `t.body` with `ATELIER_PAYMENTS_SANDBOX_SECRET`,
header `Atelier-Sandbox-Signature: t=..,v1=..`) and posts them to /callbacks/sandbox, so a local user
recharges end to end through the same verification and exactly-once path as real providers.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Mapping

import httpx

from gateway.payments.base import (
    Ack,
    Answer,
    Checkout,
    OrderView,
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

NAME = "sandbox"
SIGNATURE_HEADER = "Atelier-Sandbox-Signature"


def sign(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


class SandboxProvider:
    name = NAME

    def __init__(self, settings: PaymentSettings, http: httpx.AsyncClient | None = None) -> None:
        self._secret = settings.sandbox_secret.get_secret_value()
        self.tolerance = settings.sandbox_tolerance_seconds
        self.site_url = settings.site_url
        self.callback_url = settings.site_url(f"/callbacks/{NAME}")
        self.http = http or httpx.AsyncClient(timeout=10.0)
        # What the payer has paid, for `query` (the sandbox's own "provider records").
        self._paid: dict[str, QueryResult] = {}

    async def create_checkout(self, order: OrderView) -> Checkout:
        return Checkout(
            provider_checkout_id=f"sbx_{order.id}",
            pay_url=self.site_url(f"/sandbox/pay/{order.id}"),
            next_step="redirect",
        )

    async def query(self, order: OrderView) -> QueryResult:
        return self._paid.get(order.id, QueryResult(paid=False, provider_status="unpaid"))

    def signed_callback(
        self, order: OrderView, *, status: str = "paid", now: float | None = None, amount: Money | None = None
    ) -> tuple[bytes, dict[str, str]]:
        """The body and headers the sandbox payer sends for `order`."""
        timestamp = int(now if now is not None else time.time())
        paid = amount or order.amount
        body = json.dumps(
            {
                "id": f"evt_sbx_{secrets.token_hex(8)}",
                "type": "payment",
                "order_id": order.id,
                "status": status,
                "transaction_id": f"txn_sbx_{order.id}",
                "amount": {"minor": paid.minor, "currency": paid.currency},
                "created": timestamp,
            },
            separators=(",", ":"),
        ).encode()
        return body, {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(self._secret, timestamp, body),
        }

    async def pay(self, order: OrderView) -> int:
        """Play the payer: remember the payment and deliver its signed callback. Returns the HTTP status."""
        self._paid[order.id] = QueryResult(True, "paid", f"txn_sbx_{order.id}", order.amount)
        body, headers = self.signed_callback(order)
        response = await self.http.post(self.callback_url, content=body, headers=headers)
        return response.status_code

    def verify(self, body: bytes, headers: Mapping[str, str], now: float) -> Verdict:
        payload = json_object(body)
        event_id = str(payload.get("id", ""))
        order_id = str(payload.get("order_id", ""))
        status = str(payload.get("status", ""))

        def reject(reason: str, *, authentic: bool = False) -> Rejected:
            return Rejected(NAME, reason, event_id, order_id, status, payload, authentic=authentic)

        fields = dict(
            part.strip().partition("=")[::2] for part in header(headers, SIGNATURE_HEADER).split(",")
        )
        timestamp = fields.get("t", "")
        if not ascii_digits(timestamp) or not fields.get("v1"):
            return reject("missing or malformed signature header")
        expected = sign(self._secret, int(timestamp), body).rpartition("v1=")[2]
        if not hmac.compare_digest(expected, fields["v1"]):
            return reject("bad signature")
        if int(timestamp) < now - self.tolerance:
            return reject("timestamp outside the tolerance")
        if int(timestamp) > now + self.tolerance:
            return reject("timestamp is in the future")
        if not payload or not order_id:
            return reject("missing order_id", authentic=True)
        amount_doc = payload.get("amount")
        amount = None
        if isinstance(amount_doc, dict):
            minor, currency = amount_doc.get("minor"), amount_doc.get("currency")
            if isinstance(minor, int) and not isinstance(minor, bool) and currency in CURRENCY_EXPONENT:
                amount = Money(minor, str(currency))
        if amount is None:
            return reject("amount is not an amount", authentic=True)
        return Verified(
            NAME,
            event_id,
            order_id,
            status,
            status == "paid",
            str(payload.get("transaction_id", "")),
            amount,
            payload,
        )

    def answer(self, ack: Ack, reason: str) -> Answer:
        if ack is Ack.ACCEPTED:
            return Answer(200, b'{"received":true}', "application/json")
        status = 400 if ack is Ack.UNAUTHENTIC else 500
        return Answer(status, json.dumps({"error": reason}).encode(), "application/json")
