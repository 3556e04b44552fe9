"""Secrets come from settings and are refused at their placeholder values outside development."""

from __future__ import annotations

import pytest
from pydantic import SecretStr, ValidationError

from gateway.payments.settings import PaymentSettings
from kit.settings import PLACEHOLDER_SECRET
from tests.gateway.payments.signers import Keys


def test_development_runs_on_placeholders() -> None:
    settings = PaymentSettings(environment="development")
    assert settings.enabled == ["sandbox"]
    assert settings.sandbox_secret.get_secret_value() == PLACEHOLDER_SECRET


def test_placeholder_secret_is_refused_outside_development() -> None:
    with pytest.raises(ValidationError, match="ATELIER_PAYMENTS_SANDBOX_SECRET"):
        PaymentSettings(environment="test")


def test_sandbox_is_refused_in_production(keys: Keys) -> None:
    with pytest.raises(ValidationError, match="sandbox payment provider cannot be enabled in production"):
        keys.settings(environment="production")
    assert keys.settings(environment="production", enabled=["stripe", "alipay", "wechatpay"]).enabled


def test_every_enabled_provider_needs_its_keys(keys: Keys) -> None:
    with pytest.raises(ValidationError, match="ATELIER_PAYMENTS_STRIPE_WEBHOOK_SECRET"):
        keys.settings(environment="test", stripe_webhook_secret=SecretStr(PLACEHOLDER_SECRET))
    with pytest.raises(ValidationError, match="ATELIER_PAYMENTS_ALIPAY_SELLER_ID"):
        keys.settings(environment="test", alipay_seller_id="")
    with pytest.raises(ValidationError, match="32 bytes"):
        keys.settings(environment="test", wechatpay_apiv3_key=SecretStr("short"))
    # A provider that is not enabled needs nothing.
    settings = keys.settings(
        environment="production", enabled=["alipay"], stripe_webhook_secret=SecretStr("")
    )
    assert settings.enabled == ["alipay"]


def test_secrets_never_show_in_repr(keys: Keys) -> None:
    text = repr(keys.settings())
    assert "whsec_" not in text
    assert "PRIVATE KEY" not in text
