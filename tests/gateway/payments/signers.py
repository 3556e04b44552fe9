"""Play the providers: sign callbacks and responses exactly as Stripe, Alipay and WeChat Pay do,
with keys generated inside the tests."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import SecretStr

from gateway.payments.settings import PaymentSettings

ALIPAY_APP_ID = "2021000000000001"
ALIPAY_SELLER_ID = "2088000000000001"
WECHAT_MCHID = "1900000001"
WECHAT_APPID = "wx0000000000000001"
WECHAT_SERIALS = ("PUB_KEY_ID_0001", "PUB_KEY_ID_0002")
APIV3_KEY = "0123456789abcdef0123456789abcdef"
STRIPE_WEBHOOK_SECRET = "whsec_test_0123456789"
SANDBOX_SECRET = "sandbox-secret-for-tests"


def new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def private_pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def public_pem(key: rsa.RSAPrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def rsa_sign(key: rsa.RSAPrivateKey, message: bytes) -> str:
    return base64.b64encode(key.sign(message, padding.PKCS1v15(), hashes.SHA256())).decode()


def rsa_verify(public: rsa.RSAPublicKey, message: bytes, signature: str) -> bool:
    try:
        public.verify(base64.b64decode(signature), message, padding.PKCS1v15(), hashes.SHA256())
    except Exception:
        return False
    return True


@dataclass
class Keys:
    """Every key pair of a test run: ours (merchant/app) and the providers'."""

    alipay_app: rsa.RSAPrivateKey = field(default_factory=new_key)
    alipay_platform: rsa.RSAPrivateKey = field(default_factory=new_key)
    wechat_merchant: rsa.RSAPrivateKey = field(default_factory=new_key)
    # Two active WeChat Pay platform keys (a rotation in progress).
    wechat_platform: tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey] = field(
        default_factory=lambda: (new_key(), new_key())
    )
    stranger: rsa.RSAPrivateKey = field(default_factory=new_key)

    def settings(self, **overrides: Any) -> PaymentSettings:
        values: dict[str, Any] = {
            "environment": "test",
            "enabled": ["stripe", "alipay", "wechatpay", "sandbox"],
            "public_url": "http://gateway.test",
            "stripe_secret_key": SecretStr("sk_test_0123456789"),
            "stripe_webhook_secret": SecretStr(STRIPE_WEBHOOK_SECRET),
            "alipay_app_id": ALIPAY_APP_ID,
            "alipay_seller_id": ALIPAY_SELLER_ID,
            "alipay_app_private_key": SecretStr(private_pem(self.alipay_app)),
            "alipay_public_key": public_pem(self.alipay_platform),
            "wechatpay_mchid": WECHAT_MCHID,
            "wechatpay_appid": WECHAT_APPID,
            "wechatpay_merchant_serial": "MERCHANT_SERIAL_1",
            "wechatpay_merchant_private_key": SecretStr(private_pem(self.wechat_merchant)),
            "wechatpay_platform_public_keys": {
                serial: public_pem(key)
                for serial, key in zip(WECHAT_SERIALS, self.wechat_platform, strict=True)
            },
            "wechatpay_apiv3_key": SecretStr(APIV3_KEY),
            "sandbox_secret": SecretStr(SANDBOX_SECRET),
        }
        values.update(overrides)
        return PaymentSettings(**values)


# --- Alipay ---------------------------------------------------------------------------------------


def alipay_params(order_id: str, total_amount: str, **overrides: str) -> dict[str, str]:
    params = {
        "notify_time": "2026-11-25 20:00:00",
        "notify_type": "trade_status_sync",
        "notify_id": f"ac05099524730693a8b330c5ecf72da{secrets.token_hex(4)}",
        "app_id": ALIPAY_APP_ID,
        "charset": "utf-8",
        "version": "1.0",
        "sign_type": "RSA2",
        "trade_no": f"2026112522001{secrets.randbelow(10**9):09d}",
        "out_trade_no": order_id,
        "buyer_id": "2088102122524333",
        "seller_id": ALIPAY_SELLER_ID,
        "trade_status": "TRADE_SUCCESS",
        "total_amount": total_amount,
        "receipt_amount": total_amount,
        "buyer_pay_amount": total_amount,
        "subject": "Atelier 充值",
        "gmt_create": "2026-11-25 19:59:50",
        "gmt_payment": "2026-11-25 20:00:00",
    }
    params.update(overrides)
    return params


def alipay_sign(params: dict[str, str], key: rsa.RSAPrivateKey) -> dict[str, str]:
    """Alipay's notification signature: sorted k=v of everything but sign and sign_type."""
    content = "&".join(f"{k}={v}" for k, v in sorted(params.items()) if k not in ("sign", "sign_type"))
    return {**params, "sign": rsa_sign(key, content.encode())}


def alipay_body(params: dict[str, str]) -> bytes:
    return urlencode(params).encode()


# --- WeChat Pay -----------------------------------------------------------------------------------


def wechat_transaction(order_id: str, total: int, **overrides: Any) -> dict[str, Any]:
    transaction: dict[str, Any] = {
        "mchid": WECHAT_MCHID,
        "appid": WECHAT_APPID,
        "out_trade_no": order_id,
        "transaction_id": f"4200001{secrets.randbelow(10**9):09d}",
        "trade_type": "NATIVE",
        "trade_state": "SUCCESS",
        "trade_state_desc": "支付成功",
        "bank_type": "OTHERS",
        "success_time": "2026-11-25T20:00:00+08:00",
        "payer": {"openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"},
        "amount": {"total": total, "payer_total": total, "currency": "CNY", "payer_currency": "CNY"},
    }
    transaction.update(overrides)
    return transaction


def wechat_envelope(transaction: dict[str, Any], apiv3_key: str = APIV3_KEY, **overrides: Any) -> bytes:
    nonce = secrets.token_hex(6)  # 12 characters, as WeChat Pay sends
    associated_data = "transaction"
    ciphertext = AESGCM(apiv3_key.encode()).encrypt(
        nonce.encode(), json.dumps(transaction, ensure_ascii=False).encode(), associated_data.encode()
    )
    envelope: dict[str, Any] = {
        "id": f"EV-{secrets.token_hex(8)}",
        "create_time": "2026-11-25T20:00:01+08:00",
        "resource_type": "encrypt-resource",
        "event_type": "TRANSACTION.SUCCESS",
        "summary": "支付成功",
        "resource": {
            "original_type": "transaction",
            "algorithm": "AEAD_AES_256_GCM",
            "ciphertext": base64.b64encode(ciphertext).decode(),
            "associated_data": associated_data,
            "nonce": nonce,
        },
    }
    envelope.update(overrides)
    return json.dumps(envelope, ensure_ascii=False).encode()


def wechat_headers(
    body: bytes, key: rsa.RSAPrivateKey, serial: str, *, timestamp: int | None = None
) -> dict[str, str]:
    ts = str(timestamp if timestamp is not None else int(time.time()))
    nonce = secrets.token_hex(16)
    signature = rsa_sign(key, ts.encode() + b"\n" + nonce.encode() + b"\n" + body + b"\n")
    return {
        "Content-Type": "application/json",
        "Wechatpay-Timestamp": ts,
        "Wechatpay-Nonce": nonce,
        "Wechatpay-Signature": signature,
        "Wechatpay-Serial": serial,
        "Wechatpay-Signature-Type": "WECHATPAY2-SHA256-RSA2048",
    }


# --- Stripe ---------------------------------------------------------------------------------------


def stripe_event(
    order_id: str, amount_total: int, *, event_type: str = "checkout.session.completed", **session: Any
) -> bytes:
    obj: dict[str, Any] = {
        "id": f"cs_test_{secrets.token_hex(12)}",
        "object": "checkout.session",
        "amount_total": amount_total,
        "currency": "cny",
        "client_reference_id": order_id,
        "metadata": {"order_id": order_id},
        "mode": "payment",
        "payment_intent": f"pi_{secrets.token_hex(12)}",
        "payment_status": "paid",
        "status": "complete",
        "livemode": False,
    }
    obj.update(session)
    event = {
        "id": f"evt_{secrets.token_hex(12)}",
        "object": "event",
        "api_version": "2025-10-29.clover",
        "created": int(time.time()),
        "livemode": False,
        "pending_webhooks": 1,
        "type": event_type,
        "data": {"object": obj},
    }
    return json.dumps(event).encode()


def stripe_signature(
    body: bytes, secret: str = STRIPE_WEBHOOK_SECRET, *, timestamp: int | None = None
) -> str:
    """The Stripe-Signature header, computed by hand: HMAC-SHA256(secret, f"{t}.{body}")."""
    ts = timestamp if timestamp is not None else int(time.time())
    mac = hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={ts},v1={mac}"
