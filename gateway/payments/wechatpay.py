"""WeChat Pay (微信支付) API v3: Native orders, order query, and payment-notification verification.

Requests carry `Authorization: WECHATPAY2-SHA256-RSA2048 mchid=..,nonce_str=..,signature=..,
timestamp=..,serial_no=..` where the signature is SHA256withRSA with the merchant key over
`METHOD\\nPATH?QUERY\\ntimestamp\\nnonce\\nbody\\n`.
Notifications and responses are signed by WeChat Pay over `timestamp\\nnonce\\nbody\\n` with the
platform key named by Wechatpay-Serial (several may be active); the timestamp must be within five
minutes; `WECHATPAY/SIGNTEST/` signatures are probes and never verify. The notification's resource is
AEAD_AES_256_GCM-encrypted with the APIv3 key.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import httpx
from cryptography.hazmat.primitives.asymmetric import rsa

from gateway.payments import crypto
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
from kit.money import Money
from kit.text import ascii_digits

NAME = "wechatpay"
SIGNTEST_PREFIX = "WECHATPAY/SIGNTEST/"


def request_message(method: str, path_and_query: str, timestamp: str, nonce: str, body: str) -> bytes:
    return f"{method}\n{path_and_query}\n{timestamp}\n{nonce}\n{body}\n".encode()


def response_message(timestamp: str, nonce: str, body: bytes) -> bytes:
    return timestamp.encode() + b"\n" + nonce.encode() + b"\n" + body + b"\n"


def authorization(
    mchid: str, serial: str, key: rsa.RSAPrivateKey, method: str, path_and_query: str, body: str
) -> str:
    timestamp = str(int(time.time()))
    nonce = secrets.token_hex(16)
    signature = crypto.rsa_sign(key, request_message(method, path_and_query, timestamp, nonce, body))
    return (
        f'WECHATPAY2-SHA256-RSA2048 mchid="{mchid}",nonce_str="{nonce}",signature="{signature}",'
        f'timestamp="{timestamp}",serial_no="{serial}"'
    )


class SignatureCheck:
    """Verifies WeChat Pay's signature headers against the configured platform public keys."""

    def __init__(self, platform_keys: Mapping[str, str], window_seconds: int) -> None:
        self.keys = {serial: crypto.load_public_key(pem) for serial, pem in platform_keys.items()}
        self.window = window_seconds

    def problem(self, body: bytes, headers: Mapping[str, str], now: float) -> str | None:
        """None when the body is signed by a known platform key within the window, else why not."""
        timestamp = header(headers, "Wechatpay-Timestamp")
        nonce = header(headers, "Wechatpay-Nonce")
        signature = header(headers, "Wechatpay-Signature")
        serial = header(headers, "Wechatpay-Serial")
        if not (timestamp and nonce and signature and serial):
            return "missing Wechatpay-* signature headers"
        if signature.startswith(SIGNTEST_PREFIX):
            return "signature probe (WECHATPAY/SIGNTEST/) refused"
        if not ascii_digits(timestamp):
            return "Wechatpay-Timestamp is not a unix time"
        if abs(now - int(timestamp)) > self.window:
            return "timestamp outside the 5-minute window"
        key = self.keys.get(serial)
        if key is None:
            return f"unknown platform key serial {serial!r}"
        if not crypto.rsa_verify(key, response_message(timestamp, nonce, body), signature):
            return "bad signature"
        return None


class WechatPayProvider:
    name = NAME

    def __init__(self, settings: PaymentSettings, http: httpx.AsyncClient | None = None) -> None:
        self.mchid = settings.wechatpay_mchid
        self.appid = settings.wechatpay_appid
        self.serial = settings.wechatpay_merchant_serial
        self.api_base = settings.wechatpay_api_base.rstrip("/")
        self.notify_url = settings.site_url(f"/callbacks/{NAME}")
        self._merchant_key = crypto.load_private_key(
            settings.wechatpay_merchant_private_key.get_secret_value()
        )
        self._apiv3_key = settings.wechatpay_apiv3_key.get_secret_value().encode()
        self.signatures = SignatureCheck(
            settings.wechatpay_platform_public_keys, settings.wechatpay_window_seconds
        )
        self._http = http or httpx.AsyncClient(timeout=10.0)

    # --- requests ---------------------------------------------------------------------------

    async def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        text = "" if body is None else json.dumps(body, ensure_ascii=False, separators=(",", ":"))
        auth = authorization(self.mchid, self.serial, self._merchant_key, method, path, text)
        try:
            response = await self._http.request(
                method,
                self.api_base + path,
                content=text.encode() if body is not None else None,
                headers={
                    "Authorization": auth,
                    "Accept": "application/json",
                    "Content-Type": "application/json",
                    "User-Agent": "atelier-gateway",
                },
            )
        except httpx.HTTPError as exc:
            raise ProviderError(f"WeChat Pay {method} {path} failed: {exc!r}") from exc
        problem = self.signatures.problem(response.content, response.headers, time.time())
        if problem is not None:
            raise ProviderError(f"WeChat Pay response not trusted: {problem}")
        try:
            document = response.json()
        except ValueError as exc:
            raise ProviderError("WeChat Pay answered no JSON") from exc
        if not isinstance(document, dict):
            raise ProviderError("WeChat Pay answered an unexpected document")
        if response.status_code == 404 and document.get("code") == "ORDER_NOT_EXIST":
            return document
        if response.status_code >= 300:
            raise ProviderError(f"WeChat Pay answered HTTP {response.status_code} {document.get('code')}")
        return document

    async def create_checkout(self, order: OrderView) -> Checkout:
        """A Native order: WeChat Pay returns the `code_url` the payer scans as a QR code."""
        if order.amount.currency != "CNY":
            raise ProviderError("WeChat Pay takes CNY only")
        document = await self._call(
            "POST",
            "/v3/pay/transactions/native",
            {
                "appid": self.appid,
                "mchid": self.mchid,
                "description": order.description,
                "out_trade_no": order.id,
                "notify_url": self.notify_url,
                "amount": {"total": order.amount.minor, "currency": "CNY"},
            },
        )
        code_url = document.get("code_url")
        if not isinstance(code_url, str) or not code_url:
            raise ProviderError("WeChat Pay returned no code_url")
        return Checkout(provider_checkout_id=order.id, pay_url=code_url, next_step="qr_code")

    async def query(self, order: OrderView) -> QueryResult:
        path = (
            f"/v3/pay/transactions/out-trade-no/{quote(order.id, safe='')}?mchid={quote(self.mchid, safe='')}"
        )
        document = await self._call("GET", path)
        if document.get("code") == "ORDER_NOT_EXIST":
            return QueryResult(paid=False, provider_status="ORDER_NOT_EXIST")
        problem = self._foreign(document, order.id)
        if problem is not None:
            raise ProviderError(f"WeChat Pay query: {problem}")
        state = str(document.get("trade_state", ""))
        return QueryResult(
            paid=state == "SUCCESS",
            provider_status=state,
            transaction_id=str(document.get("transaction_id", "")),
            amount=_amount(document),
        )

    def _foreign(self, transaction: Mapping[str, Any], order_id: str | None = None) -> str | None:
        if transaction.get("mchid") != self.mchid:
            return "mchid is not ours"
        if transaction.get("appid") != self.appid:
            return "appid is not ours"
        if order_id is not None and transaction.get("out_trade_no") != order_id:
            return "answer about another order"
        return None

    # --- notifications ----------------------------------------------------------------------

    def verify(self, body: bytes, headers: Mapping[str, str], now: float) -> Verdict:
        envelope = json_object(body)
        event_id = str(envelope.get("id", ""))
        problem = self.signatures.problem(body, headers, now)
        if problem is not None:
            return Rejected(NAME, problem, event_id, payload=envelope)
        if not envelope:
            return Rejected(NAME, "body is not a JSON object", event_id)
        resource = envelope.get("resource")
        if not isinstance(resource, dict) or resource.get("algorithm") != "AEAD_AES_256_GCM":
            return Rejected(NAME, "resource is not AEAD_AES_256_GCM", event_id, payload=envelope)
        plaintext = crypto.aes_gcm_decrypt(
            self._apiv3_key,
            str(resource.get("nonce", "")),
            str(resource.get("ciphertext", "")),
            str(resource.get("associated_data", "")),
        )
        if plaintext is None:
            return Rejected(NAME, "resource does not decrypt with the APIv3 key", event_id, payload=envelope)
        try:
            transaction = json.loads(plaintext)
        except ValueError:
            transaction = None
        if not isinstance(transaction, dict):
            return Rejected(NAME, "resource is not a transaction", event_id, payload=envelope)
        payload = {**envelope, "resource": {**resource, "plaintext": transaction}}
        order_id = str(transaction.get("out_trade_no", ""))
        state = str(transaction.get("trade_state", ""))

        def refuse(reason: str) -> Rejected:
            # Signed and decrypted with our APIv3 key: WeChat Pay sent it; it is just not ours to credit.
            return Rejected(NAME, reason, event_id, order_id, state, payload, authentic=True)

        problem = self._foreign(transaction)
        if problem is not None:
            return refuse(problem)
        if not order_id:
            return refuse("missing out_trade_no")
        claimed = transaction.get("amount")
        currency = claimed.get("currency", "CNY") if isinstance(claimed, dict) else "CNY"
        if currency != "CNY":
            return refuse(f"currency {currency!r} is not CNY")
        amount = _amount(transaction)
        if amount is None:
            return refuse("amount is not an amount")
        return Verified(
            provider=NAME,
            event_id=event_id,
            order_id=order_id,
            provider_status=state,
            paid=state == "SUCCESS" and envelope.get("event_type") == "TRANSACTION.SUCCESS",
            transaction_id=str(transaction.get("transaction_id", "")),
            amount=amount,
            payload=payload,
        )

    def answer(self, ack: Ack, reason: str) -> Answer:
        if ack is Ack.ACCEPTED:
            return Answer(204, b"", "application/json")
        status = 401 if ack is Ack.UNAUTHENTIC else 500
        body = json.dumps({"code": "FAIL", "message": reason}, ensure_ascii=False).encode()
        return Answer(status, body, "application/json")


def _amount(transaction: Mapping[str, Any]) -> Money | None:
    amount = transaction.get("amount")
    if not isinstance(amount, dict):
        return None
    total = amount.get("total")
    currency = amount.get("currency", "CNY")
    if not isinstance(total, int) or isinstance(total, bool) or total < 0 or currency != "CNY":
        return None
    return Money(total, "CNY")
