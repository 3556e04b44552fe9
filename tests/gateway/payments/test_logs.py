"""Payment callbacks leave JSON log lines with the request's trace and span ids, and never a key,
a webhook secret, a signature or the encrypted resource."""

from __future__ import annotations

import json
import time

from cryptography.hazmat.primitives import serialization

from tests.gateway.payments.conftest import ALIPAY_FORM, Stack
from tests.gateway.payments.signers import (
    APIV3_KEY,
    SANDBOX_SECRET,
    STRIPE_WEBHOOK_SECRET,
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
from tests.json_logs import json_logs
from tests.tracing import traced


def _private_key_line(keys: Keys) -> str:
    pem = keys.alipay_app.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return pem.splitlines()[1]


async def test_callbacks_log_their_trace_and_no_secret(stack: Stack, keys: Keys) -> None:
    stack.ledger.seed_order("ro_l1", "alipay", 30000)
    stack.ledger.seed_order("ro_l2", "wechatpay", 30000)
    stack.ledger.seed_order("ro_l3", "stripe", 30000)
    alipay_good = alipay_sign(alipay_params("ro_l1", "300.00"), keys.alipay_platform)
    alipay_forged = alipay_sign(alipay_params("ro_l1", "300.00"), keys.stranger)
    wechat_body = wechat_envelope(wechat_transaction("ro_l2", 30000))
    wechat = wechat_headers(wechat_body, keys.wechat_platform[0], WECHAT_SERIALS[0])
    stripe_body = stripe_event("ro_l3", 30000)
    stripe_good = stripe_signature(stripe_body)
    stripe_late = stripe_signature(stripe_body, timestamp=int(time.time()) - 3600)
    secrets = [
        APIV3_KEY,
        STRIPE_WEBHOOK_SECRET,
        SANDBOX_SECRET,
        "sk_test_0123456789",
        _private_key_line(keys),
        alipay_good["sign"],
        alipay_forged["sign"],
        wechat["Wechatpay-Signature"],
        json.loads(wechat_body)["resource"]["ciphertext"],
        stripe_good.split("v1=")[1],
        stripe_late.split("v1=")[1],
    ]

    with json_logs() as written:
        with traced() as trace_id:
            await stack.http.post("/callbacks/alipay", content=alipay_body(alipay_good), headers=ALIPAY_FORM)
            await stack.http.post(
                "/callbacks/alipay", content=alipay_body(alipay_forged), headers=ALIPAY_FORM
            )
            await stack.http.post("/callbacks/wechatpay", content=wechat_body, headers=wechat)
            await stack.http.post(
                "/callbacks/stripe", content=stripe_body, headers={"Stripe-Signature": stripe_good}
            )
            await stack.http.post(
                "/callbacks/stripe", content=stripe_body, headers={"Stripe-Signature": stripe_late}
            )

    assert sorted(stack.ledger.credits) == ["ro_l1", "ro_l2", "ro_l3"]
    callbacks = [e for e in written.entries() if e["msg"] == "payment callback"]
    assert len(callbacks) == 5
    assert {e["trace_id"] for e in callbacks} == {trace_id}
    assert all(len(e["span_id"]) == 16 for e in callbacks)
    assert [e["outcome"] for e in callbacks].count("CALLBACK_OUTCOME_REJECTED") == 2
    rejected = [e for e in written.entries() if e["msg"] == "payment callback rejected"]
    assert {e["provider"] for e in rejected} == {"alipay", "stripe"}
    for secret in secrets:
        assert secret not in written.text, f"a secret reached the logs: {secret[:12]}..."
