"""Alipay (支付宝) page pay: RSA2-signed requests and asynchronous-notification verification.

Requests (alipay.trade.page.pay, alipay.trade.query): every non-empty parameter but `sign`, sorted by
name, joined `k=v` with `&`, signed SHA256withRSA with the app private key.
Notifications (form POST): drop `sign` and `sign_type`, sort, join `k=v` with `&` over the decoded
values, verify SHA256withRSA (PKCS#1 v1.5) with the Alipay public key; then app_id and seller_id must
be ours; only TRADE_SUCCESS and TRADE_FINISHED mean paid. Alipay wants the bare body `success`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qsl, urlencode

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
)
from gateway.payments.settings import PaymentSettings
from kit.money import Money, MoneyParseError

NAME = "alipay"
PAID_STATUSES = frozenset({"TRADE_SUCCESS", "TRADE_FINISHED"})
_BEIJING = timezone(timedelta(hours=8))


def signing_string(params: Mapping[str, str], *, skip_empty: bool, exclude: tuple[str, ...]) -> str:
    items = sorted((k, v) for k, v in params.items() if k not in exclude and (v != "" or not skip_empty))
    return "&".join(f"{k}={v}" for k, v in items)


def sign_request(params: Mapping[str, str], private_key: rsa.RSAPrivateKey) -> dict[str, str]:
    """The request parameters with `sign` added (sign_type is part of what is signed)."""
    message = signing_string(params, skip_empty=True, exclude=("sign",))
    return {**params, "sign": crypto.rsa_sign(private_key, message.encode())}


def notification_message(params: Mapping[str, str]) -> str:
    return signing_string(params, skip_empty=False, exclude=("sign", "sign_type"))


def parse_form(body: bytes) -> dict[str, str]:
    """Decode a form body; Alipay declares its charset in the form itself (utf-8 by default)."""
    text = body.decode("latin-1")
    charset = dict(parse_qsl(text, keep_blank_values=True)).get("charset", "utf-8") or "utf-8"
    try:
        return dict(
            parse_qsl(body.decode("ascii"), keep_blank_values=True, encoding=charset, errors="strict")
        )
    except (UnicodeDecodeError, LookupError):
        return dict(parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True))


def signed_response_content(raw: str, key: str) -> str | None:
    """The exact JSON text of `key`'s object in a synchronous response: what Alipay signed."""
    match = re.search(r'"' + re.escape(key) + r'"\s*:\s*', raw)
    if match is None:
        return None
    start = match.end()
    if start >= len(raw) or raw[start] != "{":
        return None
    depth = 0
    in_string = False
    escaped = False
    for index in range(start, len(raw)):
        char = raw[index]
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return raw[start : index + 1]
    return None


class AlipayProvider:
    name = NAME

    def __init__(self, settings: PaymentSettings, http: httpx.AsyncClient | None = None) -> None:
        self.app_id = settings.alipay_app_id
        self.seller_id = settings.alipay_seller_id
        self.gateway_url = settings.alipay_gateway_url
        self.notify_url = settings.site_url(f"/callbacks/{NAME}")
        self.return_url = settings.site_url("/billing")
        self._private_key = crypto.load_private_key(settings.alipay_app_private_key.get_secret_value())
        self._public_key = crypto.load_public_key(settings.alipay_public_key)
        self._http = http or httpx.AsyncClient(timeout=15.0)

    # --- requests ---------------------------------------------------------------------------

    def _request_params(self, method: str, biz_content: Mapping[str, Any], now: datetime) -> dict[str, str]:
        params = {
            "app_id": self.app_id,
            "method": method,
            "format": "JSON",
            "charset": "utf-8",
            "sign_type": "RSA2",
            "timestamp": now.astimezone(_BEIJING).strftime("%Y-%m-%d %H:%M:%S"),
            "version": "1.0",
            "biz_content": json.dumps(biz_content, ensure_ascii=False, separators=(",", ":")),
        }
        return params

    def page_pay_url(self, order: OrderView, now: datetime | None = None) -> str:
        """A signed alipay.trade.page.pay URL the payer's browser is redirected to."""
        params = self._request_params(
            "alipay.trade.page.pay",
            {
                "out_trade_no": order.id,
                "total_amount": order.amount.major_str(),
                "subject": order.description,
                "product_code": "FAST_INSTANT_TRADE_PAY",
            },
            now or datetime.now(UTC),
        )
        params["notify_url"] = self.notify_url
        params["return_url"] = self.return_url
        return f"{self.gateway_url}?{urlencode(sign_request(params, self._private_key))}"

    async def create_checkout(self, order: OrderView) -> Checkout:
        if order.amount.currency != "CNY":
            raise ProviderError("Alipay takes CNY only")
        return Checkout(provider_checkout_id=order.id, pay_url=self.page_pay_url(order), next_step="redirect")

    async def query(self, order: OrderView) -> QueryResult:
        """alipay.trade.query by out_trade_no, with the response signature verified."""
        params = sign_request(
            self._request_params("alipay.trade.query", {"out_trade_no": order.id}, datetime.now(UTC)),
            self._private_key,
        )
        try:
            response = await self._http.post(self.gateway_url, data=params)
        except httpx.HTTPError as exc:
            raise ProviderError(f"alipay.trade.query failed: {exc!r}") from exc
        if response.status_code != 200:
            raise ProviderError(f"alipay.trade.query answered HTTP {response.status_code}")
        raw = response.text
        try:
            document = json.loads(raw)
        except ValueError as exc:
            raise ProviderError("alipay.trade.query answered no JSON") from exc
        content = signed_response_content(raw, "alipay_trade_query_response")
        sign = document.get("sign", "") if isinstance(document, dict) else ""
        if content is None or not sign or not crypto.rsa_verify(self._public_key, content.encode(), sign):
            raise ProviderError("alipay.trade.query response signature is not valid")
        result = json.loads(content)
        if result.get("code") != "10000":
            # ACQ.TRADE_NOT_EXIST: the payer never reached Alipay; not paid.
            return QueryResult(paid=False, provider_status=str(result.get("sub_code") or result.get("code")))
        status = str(result.get("trade_status", ""))
        amount = _money(result.get("total_amount"))
        if str(result.get("out_trade_no", "")) != order.id:
            raise ProviderError("alipay.trade.query answered about another order")
        return QueryResult(
            paid=status in PAID_STATUSES,
            provider_status=status,
            transaction_id=str(result.get("trade_no", "")),
            amount=amount,
        )

    # --- notifications ----------------------------------------------------------------------

    def verify(self, body: bytes, headers: Mapping[str, str], now: float) -> Verdict:
        params = parse_form(body)
        event_id = params.get("notify_id", "")
        order_id = params.get("out_trade_no", "")
        status = params.get("trade_status", "")

        def reject(reason: str, *, authentic: bool = False) -> Rejected:
            return Rejected(NAME, reason, event_id, order_id, status, dict(params), authentic=authentic)

        sign = params.get("sign", "")
        if not sign:
            return reject("missing sign")
        if params.get("sign_type", "RSA2") != "RSA2":
            return reject(f"unsupported sign_type {params.get('sign_type')!r}")
        if not crypto.rsa_verify(self._public_key, notification_message(params).encode(), sign):
            return reject("bad signature")
        # Signed by Alipay from here on: a refusal is acknowledged, as redelivery cannot change it.
        if params.get("app_id") != self.app_id:
            return reject("app_id is not ours", authentic=True)
        if params.get("seller_id") != self.seller_id:
            return reject("seller_id is not ours", authentic=True)
        if not order_id:
            return reject("missing out_trade_no", authentic=True)
        amount = _money(params.get("total_amount"))
        if amount is None:
            return reject("total_amount is not an amount", authentic=True)
        return Verified(
            provider=NAME,
            event_id=event_id,
            order_id=order_id,
            provider_status=status,
            paid=status in PAID_STATUSES,
            transaction_id=params.get("trade_no", ""),
            amount=amount,
            payload=dict(params),
        )

    def answer(self, ack: Ack, reason: str) -> Answer:
        # Anything but the bare `success` makes Alipay deliver again (~8 times over ~25 h).
        body = b"success" if ack is Ack.ACCEPTED else b"failure"
        return Answer(200, body, "text/plain")


def _money(value: object) -> Money | None:
    if not isinstance(value, str) or not re.fullmatch(r"\d+(\.\d{1,2})?", value):
        return None
    try:
        return Money.parse(value, "CNY")
    except MoneyParseError:
        return None
