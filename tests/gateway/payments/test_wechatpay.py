"""WeChat Pay v3: notifications signed by platform keys over `timestamp\\nnonce\\nbody\\n`, resources
encrypted AEAD_AES_256_GCM; requests signed with the merchant key."""

from __future__ import annotations

import base64
import json
import time

import httpx
import pytest

from gateway.payments.base import Ack, OrderView, ProviderError, Rejected, Verified
from gateway.payments.crypto import load_public_key, rsa_verify
from gateway.payments.settings import PaymentSettings
from gateway.payments.wechatpay import WechatPayProvider
from kit.money import Money
from tests.gateway.payments.signers import (
    WECHAT_APPID,
    WECHAT_MCHID,
    WECHAT_SERIALS,
    Keys,
    public_pem,
    wechat_envelope,
    wechat_headers,
    wechat_transaction,
)


@pytest.fixture(scope="module")
def wechat(payment_settings: PaymentSettings) -> WechatPayProvider:
    return WechatPayProvider(payment_settings)


@pytest.mark.parametrize("which", [0, 1])
def test_notification_signed_by_any_active_platform_key_is_verified(
    wechat: WechatPayProvider, keys: Keys, which: int
) -> None:
    body = wechat_envelope(wechat_transaction("ro_1", 30000))
    headers = wechat_headers(body, keys.wechat_platform[which], WECHAT_SERIALS[which])
    verdict = wechat.verify(body, headers, time.time())
    assert isinstance(verdict, Verified), verdict
    assert verdict.paid
    assert verdict.order_id == "ro_1"
    assert verdict.amount == Money(30000, "CNY")
    assert verdict.transaction_id.startswith("4200001")
    assert verdict.event_id.startswith("EV-")
    # The callback log keeps the decrypted transaction, never the ciphertext.
    assert "ciphertext" not in json.dumps(wechat_log_payload(verdict.payload))


def wechat_log_payload(payload: dict[str, object]) -> object:
    from gateway.payments.base import redact

    return redact(payload)


@pytest.mark.parametrize("state", ["NOTPAY", "CLOSED", "USERPAYING", "PAYERROR", "REVOKED"])
def test_unpaid_trade_states_are_verified_but_not_paid(
    wechat: WechatPayProvider, keys: Keys, state: str
) -> None:
    body = wechat_envelope(wechat_transaction("ro_1", 30000, trade_state=state))
    verdict = wechat.verify(
        body, wechat_headers(body, keys.wechat_platform[0], WECHAT_SERIALS[0]), time.time()
    )
    assert isinstance(verdict, Verified)
    assert not verdict.paid
    assert verdict.provider_status == state


def _case(keys: Keys, case: str) -> tuple[bytes, dict[str, str]]:
    now = int(time.time())
    good = wechat_envelope(wechat_transaction("ro_1", 30000))
    platform, serial = keys.wechat_platform[0], WECHAT_SERIALS[0]
    if case == "bad signature":
        headers = wechat_headers(good, platform, serial)
        headers["Wechatpay-Signature"] = base64.b64encode(b"\0" * 256).decode()
        return good, headers
    if case == "wrong key":
        return good, wechat_headers(good, keys.stranger, serial)
    if case == "key of the other serial":
        return good, wechat_headers(good, keys.wechat_platform[1], serial)
    if case == "unknown serial":
        return good, wechat_headers(good, platform, "PUB_KEY_ID_9999")
    if case == "tampered body":
        headers = wechat_headers(good, platform, serial)
        return good.replace(b"TRANSACTION.SUCCESS", b"TRANSACTION.SUCCESS "), headers
    if case == "expired window":
        return good, wechat_headers(good, platform, serial, timestamp=now - 301)
    if case == "future timestamp":
        return good, wechat_headers(good, platform, serial, timestamp=now + 301)
    if case == "SIGNTEST probe":
        headers = wechat_headers(good, platform, serial)
        headers["Wechatpay-Signature"] = "WECHATPAY/SIGNTEST/" + headers["Wechatpay-Signature"]
        return good, headers
    if case == "superscript timestamp":
        headers = wechat_headers(good, platform, serial)
        headers["Wechatpay-Timestamp"] = "\u00b2" + headers["Wechatpay-Timestamp"]
        return good, headers
    if case == "missing headers":
        return good, {"Content-Type": "application/json"}
    if case == "wrong mchid":
        body = wechat_envelope(wechat_transaction("ro_1", 30000, mchid="1900009999"))
    elif case == "wrong appid":
        body = wechat_envelope(wechat_transaction("ro_1", 30000, appid="wx9999999999999999"))
    elif case == "wrong APIv3 key":
        body = wechat_envelope(wechat_transaction("ro_1", 30000), apiv3_key="f" * 32)
    elif case == "wrong currency":
        body = wechat_envelope(wechat_transaction("ro_1", 30000, amount={"total": 30000, "currency": "USD"}))
    elif case == "bad amount":
        body = wechat_envelope(wechat_transaction("ro_1", 30000, amount={"total": "300", "currency": "CNY"}))
    else:
        raise AssertionError(case)
    return body, wechat_headers(body, platform, serial)


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("bad signature", "bad signature"),
        ("wrong key", "bad signature"),
        ("key of the other serial", "bad signature"),
        ("unknown serial", "unknown platform key serial"),
        ("tampered body", "bad signature"),
        ("expired window", "timestamp outside the 5-minute window"),
        ("future timestamp", "timestamp outside the 5-minute window"),
        ("SIGNTEST probe", "signature probe"),
        ("missing headers", "missing Wechatpay-* signature headers"),
        ("superscript timestamp", "Wechatpay-Timestamp is not a unix time"),
        ("wrong mchid", "mchid is not ours"),
        ("wrong appid", "appid is not ours"),
        ("wrong currency", "currency 'USD' is not CNY"),
        ("wrong APIv3 key", "resource does not decrypt"),
        ("bad amount", "amount is not an amount"),
    ],
)
def test_forged_and_tampered_notifications_are_rejected(
    wechat: WechatPayProvider, keys: Keys, case: str, reason: str
) -> None:
    body, headers = _case(keys, case)
    verdict = wechat.verify(body, headers, time.time())
    assert isinstance(verdict, Rejected), verdict
    assert verdict.reason.startswith(reason)
    # Signed and decrypted: WeChat Pay sent it, so it is acknowledged rather than refused.
    assert verdict.authentic == (case in {"wrong mchid", "wrong appid", "wrong currency", "bad amount"})


def test_answers(wechat: WechatPayProvider) -> None:
    ok = wechat.answer(Ack.ACCEPTED, "")
    assert ok.status_code == 204
    assert ok.body == b""
    refused = wechat.answer(Ack.UNAUTHENTIC, "bad signature")
    assert refused.status_code == 401
    assert json.loads(refused.body) == {"code": "FAIL", "message": "bad signature"}
    assert wechat.answer(Ack.RETRY, "ledger down").status_code == 500


def _fake_wechat(
    keys: Keys, seen: list[httpx.Request], answer: dict[str, object], *, sign_with: int = 0
) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        body = json.dumps(answer).encode()
        key = keys.wechat_platform[0] if sign_with == 0 else keys.stranger
        return httpx.Response(200, content=body, headers=wechat_headers(body, key, WECHAT_SERIALS[0]))

    return httpx.MockTransport(handler)


async def test_native_order_is_signed_with_the_merchant_key(
    payment_settings: PaymentSettings, keys: Keys
) -> None:
    seen: list[httpx.Request] = []
    transport = _fake_wechat(keys, seen, {"code_url": "weixin://wxpay/bizpayurl?pr=abc"})
    async with httpx.AsyncClient(transport=transport) as http:
        provider = WechatPayProvider(payment_settings, http=http)
        order = OrderView(id="ro_7", user_id="u", provider="wechatpay", amount=Money(30000, "CNY"))
        checkout = await provider.create_checkout(order)
    assert checkout.pay_url == "weixin://wxpay/bizpayurl?pr=abc"
    assert checkout.next_step == "qr_code"
    request = seen[0]
    assert request.url.path == "/v3/pay/transactions/native"
    sent = json.loads(request.content)
    assert sent == {
        "appid": WECHAT_APPID,
        "mchid": WECHAT_MCHID,
        "description": "Atelier credits",
        "out_trade_no": "ro_7",
        "notify_url": "http://gateway.test/callbacks/wechatpay",
        "amount": {"total": 30000, "currency": "CNY"},
    }
    scheme, _, params = request.headers["Authorization"].partition(" ")
    assert scheme == "WECHATPAY2-SHA256-RSA2048"
    fields = dict(item.split("=", 1) for item in params.split(","))
    fields = {k: v.strip('"') for k, v in fields.items()}
    assert fields["mchid"] == WECHAT_MCHID
    assert fields["serial_no"] == "MERCHANT_SERIAL_1"
    message = f"POST\n/v3/pay/transactions/native\n{fields['timestamp']}\n{fields['nonce_str']}\n"
    message += request.content.decode() + "\n"
    merchant_public = load_public_key(public_pem(keys.wechat_merchant))
    assert rsa_verify(merchant_public, message.encode(), fields["signature"])


async def test_unsigned_response_is_not_trusted(payment_settings: PaymentSettings, keys: Keys) -> None:
    transport = _fake_wechat(keys, [], {"code_url": "weixin://wxpay/bizpayurl?pr=evil"}, sign_with=1)
    async with httpx.AsyncClient(transport=transport) as http:
        provider = WechatPayProvider(payment_settings, http=http)
        order = OrderView(id="ro_7", user_id="u", provider="wechatpay", amount=Money(30000, "CNY"))
        with pytest.raises(ProviderError, match="not trusted"):
            await provider.create_checkout(order)
