"""Alipay: RSA2 notifications verified exactly as Alipay signs them; page-pay requests signed RSA2."""

from __future__ import annotations

import json
import time
from urllib.parse import parse_qsl, urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.payments.alipay import AlipayProvider, notification_message, signed_response_content
from gateway.payments.base import Ack, OrderView, Rejected, Verified
from gateway.payments.crypto import load_public_key, rsa_verify
from gateway.payments.settings import PaymentSettings
from kit.money import Money
from tests.gateway.payments.signers import (
    ALIPAY_APP_ID,
    Keys,
    alipay_body,
    alipay_params,
    alipay_sign,
    public_pem,
    rsa_sign,
)

NOW = time.time()


@pytest.fixture(scope="module")
def alipay(payment_settings: PaymentSettings) -> AlipayProvider:
    return AlipayProvider(payment_settings)


def _verify(alipay: AlipayProvider, params: dict[str, str]) -> Verified | Rejected:
    return alipay.verify(alipay_body(params), {"Content-Type": "application/x-www-form-urlencoded"}, NOW)


def test_signed_notification_is_verified_with_its_amount(alipay: AlipayProvider, keys: Keys) -> None:
    params = alipay_sign(alipay_params("ro_1", "300.00"), keys.alipay_platform)
    verdict = _verify(alipay, params)
    assert isinstance(verdict, Verified), verdict
    assert verdict.paid
    assert verdict.order_id == "ro_1"
    assert verdict.amount == Money(30000, "CNY")
    assert verdict.transaction_id == params["trade_no"]
    assert verdict.event_id == params["notify_id"]


def test_trade_finished_is_paid_too(alipay: AlipayProvider, keys: Keys) -> None:
    params = alipay_sign(alipay_params("ro_1", "300.00", trade_status="TRADE_FINISHED"), keys.alipay_platform)
    verdict = _verify(alipay, params)
    assert isinstance(verdict, Verified)
    assert verdict.paid


@pytest.mark.parametrize("status", ["TRADE_CLOSED", "WAIT_BUYER_PAY"])
def test_unpaid_statuses_are_verified_but_not_paid(alipay: AlipayProvider, keys: Keys, status: str) -> None:
    verdict = _verify(
        alipay, alipay_sign(alipay_params("ro_1", "300.00", trade_status=status), keys.alipay_platform)
    )
    assert isinstance(verdict, Verified)
    assert not verdict.paid
    assert verdict.provider_status == status


def test_signature_covers_everything_but_sign_and_sign_type(keys: Keys) -> None:
    params = alipay_params("ro_1", "1.00", extra="")
    message = notification_message({**params, "sign": "x"})
    assert "sign_type" not in message
    assert "sign=" not in message
    assert message.startswith("app_id=")
    assert "&extra=&" in message
    assert message.split("&") == sorted(message.split("&"))


def _forged(keys: Keys) -> dict[str, dict[str, str]]:
    good = alipay_params("ro_1", "300.00")
    signed = alipay_sign(good, keys.alipay_platform)
    return {
        "bad signature": {**signed, "sign": rsa_sign(keys.alipay_platform, b"something else")},
        "garbage signature": {**signed, "sign": "not-base64!!"},
        "missing sign": {k: v for k, v in signed.items() if k != "sign"},
        "wrong key": alipay_sign(good, keys.stranger),
        "our own app key": alipay_sign(good, keys.alipay_app),
        "tampered amount": {**signed, "total_amount": "3000.00"},
        "tampered order": {**signed, "out_trade_no": "ro_2"},
        "tampered status": {
            **alipay_sign({**good, "trade_status": "TRADE_CLOSED"}, keys.alipay_platform),
            "trade_status": "TRADE_SUCCESS",
        },
        "wrong app_id": alipay_sign({**good, "app_id": "2021000000009999"}, keys.alipay_platform),
        "wrong seller_id": alipay_sign({**good, "seller_id": "2088000000009999"}, keys.alipay_platform),
        "RSA1 sign_type": {**signed, "sign_type": "RSA"},
        "amount not an amount": alipay_sign({**good, "total_amount": "3e2"}, keys.alipay_platform),
    }


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("bad signature", "bad signature"),
        ("garbage signature", "bad signature"),
        ("missing sign", "missing sign"),
        ("wrong key", "bad signature"),
        ("our own app key", "bad signature"),
        ("tampered amount", "bad signature"),
        ("tampered order", "bad signature"),
        ("tampered status", "bad signature"),
        ("wrong app_id", "app_id is not ours"),
        ("wrong seller_id", "seller_id is not ours"),
        ("RSA1 sign_type", "unsupported sign_type"),
        ("amount not an amount", "total_amount is not an amount"),
    ],
)
def test_forged_and_tampered_notifications_are_rejected(
    alipay: AlipayProvider, keys: Keys, case: str, reason: str
) -> None:
    verdict = _verify(alipay, _forged(keys)[case])
    assert isinstance(verdict, Rejected)
    assert verdict.reason.startswith(reason)
    assert verdict.provider == "alipay"
    assert verdict.authentic == (case in {"wrong app_id", "wrong seller_id", "amount not an amount"})


def test_answers_are_the_bare_words_alipay_expects(alipay: AlipayProvider) -> None:
    assert alipay.answer(Ack.ACCEPTED, "").body == b"success"
    assert alipay.answer(Ack.UNAUTHENTIC, "bad signature").body == b"failure"
    assert alipay.answer(Ack.RETRY, "ledger down").body == b"failure"


def test_page_pay_url_is_signed_rsa2_with_the_app_key(alipay: AlipayProvider, keys: Keys) -> None:
    order = OrderView(id="ro_9", user_id="u1", provider="alipay", amount=Money(30000, "CNY"))
    url = alipay.page_pay_url(order)
    split = urlsplit(url)
    assert f"{split.scheme}://{split.netloc}{split.path}" == "https://openapi.alipay.com/gateway.do"
    params = dict(parse_qsl(split.query))
    assert params["method"] == "alipay.trade.page.pay"
    assert params["app_id"] == ALIPAY_APP_ID
    assert params["sign_type"] == "RSA2"
    assert params["notify_url"] == "http://gateway.test/callbacks/alipay"
    biz = json.loads(params["biz_content"])
    assert biz == {
        "out_trade_no": "ro_9",
        "total_amount": "300.00",
        "subject": "Atelier credits",
        "product_code": "FAST_INSTANT_TRADE_PAY",
    }
    # Alipay checks: every non-empty parameter but sign (sign_type included), sorted, k=v joined by &.
    content = "&".join(f"{k}={v}" for k, v in sorted(params.items()) if k != "sign" and v)
    app_public = load_public_key(public_pem(keys.alipay_app))
    assert rsa_verify(app_public, content.encode(), params["sign"])
    assert not rsa_verify(app_public, (content + "x").encode(), params["sign"])


def test_signed_response_content_is_the_exact_json_text() -> None:
    raw = '{"alipay_trade_query_response":{"code":"10000","msg":"a}b{\\"c","n":{"x":1}},"sign":"abc"}'
    assert signed_response_content(raw, "alipay_trade_query_response") == (
        '{"code":"10000","msg":"a}b{\\"c","n":{"x":1}}'
    )
    assert signed_response_content('{"other":{}}', "alipay_trade_query_response") is None


_VALUE = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=20)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(extra=st.dictionaries(st.from_regex(r"^x_[a-z_]{1,10}$", fullmatch=True), _VALUE, max_size=5))
def test_any_signed_form_survives_encoding_and_any_change_breaks_it(
    alipay: AlipayProvider, keys: Keys, extra: dict[str, str]
) -> None:
    """Values with &, =, +, spaces and any Unicode: what Alipay signed is what we verify."""
    params = alipay_sign({**alipay_params("ro_h", "300.00"), **extra}, keys.alipay_platform)
    verdict = _verify(alipay, params)
    assert isinstance(verdict, Verified), verdict
    for key, value in extra.items():
        tampered = _verify(alipay, {**params, key: value + "!"})
        assert isinstance(tampered, Rejected)
