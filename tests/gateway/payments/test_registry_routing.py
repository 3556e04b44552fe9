"""Which provider takes an order for a payment method's provider."""

from __future__ import annotations

import pytest

from gateway.payments.registry import PaymentGateway
from gateway.payments.sandbox import SandboxProvider
from gateway.payments.settings import PaymentSettings
from kit.errors import NotFound


def test_the_sandbox_stands_in_for_unconfigured_providers_locally() -> None:
    gateway = PaymentGateway.from_settings(PaymentSettings(enabled=["sandbox"]))
    assert isinstance(gateway.get("sandbox"), SandboxProvider)
    assert gateway.route("alipay") == "sandbox"
    assert gateway.route("stripe") == "sandbox"
    assert gateway.route("sandbox") == "sandbox"


def test_without_a_sandbox_an_unconfigured_provider_is_refused() -> None:
    gateway = PaymentGateway({})
    with pytest.raises(NotFound) as refused:
        gateway.route("wechatpay")
    assert refused.value.code == "payment_provider_disabled"
