"""What every payment provider offers, in provider-neutral types.

Verification is pure: bytes and headers in, a `Verified` notification or a `Rejected` reason out, with
the clock passed in. The HTTP edge and the ledger calls live elsewhere (`processing.py`).
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol

from kit.money import Money

NextStep = Literal["redirect", "qr_code"]

# Payload keys never stored in the callback log.
_SECRET_KEYS = frozenset({"sign", "signature", "ciphertext", "client_secret", "api_key", "secret"})
# Headers kept in the callback log (signatures dropped).
_LOGGED_HEADERS = ("content-type", "user-agent", "wechatpay-timestamp", "wechatpay-nonce", "wechatpay-serial")


@dataclass(frozen=True, slots=True)
class OrderView:
    """The fields of a ledger recharge order that providers need."""

    id: str
    user_id: str
    provider: str
    amount: Money
    description: str = "Atelier credits"
    provider_checkout_id: str = ""


@dataclass(frozen=True, slots=True)
class Checkout:
    """The payer's next step after an order is created."""

    provider_checkout_id: str
    pay_url: str
    next_step: NextStep = "redirect"


@dataclass(frozen=True, slots=True)
class Verified:
    """A notification whose signature (and freshness) checked out, with the provider's claims parsed."""

    authentic: ClassVar[bool] = True
    provider: str
    event_id: str
    order_id: str
    provider_status: str
    # True when the provider says the order is paid (TRADE_SUCCESS, SUCCESS, paid session...).
    paid: bool
    transaction_id: str
    amount: Money | None
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Rejected:
    """A notification we do not act on, and why (in plain words, for the callback log).

    `authentic` when the provider did send it (signature, and decryption where there is one, are
    good) but it is not a payment we can credit: another merchant or app, another currency, a
    malformed claim. Redelivery cannot change that, so it is acknowledged like any recorded outcome;
    only an unverifiable delivery is refused (and so retried by the provider)."""

    provider: str
    reason: str
    event_id: str = ""
    order_id: str = ""
    provider_status: str = ""
    payload: dict[str, Any] = field(default_factory=dict)
    authentic: bool = False


Verdict = Verified | Rejected


@dataclass(frozen=True, slots=True)
class QueryResult:
    """What a provider's order query says about one of our orders."""

    paid: bool
    provider_status: str
    transaction_id: str = ""
    amount: Money | None = None


class Ack(enum.Enum):
    """How to answer the provider."""

    # Recorded durably; retrying would not change anything.
    ACCEPTED = "accepted"
    # Not believed (signature, window, decryption): answer failure.
    UNAUTHENTIC = "unauthentic"
    # Our own failure: ask the provider to retry.
    RETRY = "retry"


@dataclass(frozen=True, slots=True)
class Answer:
    status_code: int
    body: bytes
    media_type: str


class ProviderError(Exception):
    """A provider API call failed (network, HTTP error, bad or unsigned response)."""


class PaymentProvider(Protocol):
    name: str

    async def create_checkout(self, order: OrderView) -> Checkout: ...

    def verify(self, body: bytes, headers: Mapping[str, str], now: float) -> Verdict: ...

    async def query(self, order: OrderView) -> QueryResult: ...

    def answer(self, ack: Ack, reason: str) -> Answer: ...


def redact(payload: Any) -> Any:
    """The payload without signatures, ciphertexts and secrets (for the callback log)."""
    if isinstance(payload, dict):
        return {key: redact(value) for key, value in payload.items() if key.lower() not in _SECRET_KEYS}
    if isinstance(payload, list):
        return [redact(item) for item in payload]
    return payload


def logged_headers(headers: Mapping[str, str]) -> dict[str, str]:
    lowered = {key.lower(): value for key, value in headers.items()}
    return {key: lowered[key] for key in _LOGGED_HEADERS if key in lowered}


def payload_json(payload: Mapping[str, Any]) -> str:
    return json.dumps(redact(dict(payload)), ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def header(headers: Mapping[str, str], name: str) -> str:
    """A header by case-insensitive name ("" when absent)."""
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return value
    return ""


def json_object(body: bytes) -> dict[str, Any]:
    """The body as a JSON object; {} when it is not JSON or not an object (callers reject it then)."""
    try:
        document = json.loads(body)
    except ValueError:
        return {}
    return document if isinstance(document, dict) else {}
