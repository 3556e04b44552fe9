"""The sandbox payer signs its callbacks; the sandbox verifier refuses anything else."""

from __future__ import annotations

import time

import pytest

from gateway.payments.base import Ack, OrderView, Rejected, Verified
from gateway.payments.sandbox import SIGNATURE_HEADER, SandboxProvider, sign
from gateway.payments.settings import PaymentSettings
from kit.money import Money

ORDER = OrderView(id="ro_s", user_id="u", provider="sandbox", amount=Money(3000, "CNY"))


@pytest.fixture(scope="module")
def sandbox(payment_settings: PaymentSettings) -> SandboxProvider:
    return SandboxProvider(payment_settings)


def test_payer_callback_verifies(sandbox: SandboxProvider) -> None:
    body, headers = sandbox.signed_callback(ORDER)
    verdict = sandbox.verify(body, headers, time.time())
    assert isinstance(verdict, Verified)
    assert verdict.paid
    assert verdict.amount == Money(3000, "CNY")
    assert verdict.order_id == "ro_s"


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("wrong secret", "bad signature"),
        ("tampered", "bad signature"),
        ("expired", "timestamp outside the tolerance"),
        ("future", "timestamp is in the future"),
        ("missing", "missing or malformed signature header"),
        # str.isdigit() takes a superscript two that int() then refuses: a refusal, never a traceback.
        ("superscript timestamp", "missing or malformed signature header"),
    ],
)
def test_forged_callbacks_are_rejected(sandbox: SandboxProvider, case: str, reason: str) -> None:
    now = time.time()
    body, headers = sandbox.signed_callback(ORDER, now=now - 400 if case == "expired" else now)
    if case == "future":
        body, headers = sandbox.signed_callback(ORDER, now=now + 400)
    if case == "wrong secret":
        headers[SIGNATURE_HEADER] = sign("other-secret", int(now), body)
    if case == "tampered":
        body = body.replace(b'"minor":3000', b'"minor":300000')
    if case == "missing":
        headers = {}
    if case == "superscript timestamp":
        headers[SIGNATURE_HEADER] = headers[SIGNATURE_HEADER].replace("t=", "t=\u00b2", 1)
    verdict = sandbox.verify(body, headers, now)
    assert isinstance(verdict, Rejected)
    assert verdict.reason.startswith(reason)


def test_answers(sandbox: SandboxProvider) -> None:
    assert sandbox.answer(Ack.ACCEPTED, "").status_code == 200
    assert sandbox.answer(Ack.UNAUTHENTIC, "x").status_code == 400
