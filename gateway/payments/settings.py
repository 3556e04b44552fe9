"""Payment settings: every key, secret and id comes from the environment (ATELIER_PAYMENTS_*), never code.

Outside development a secret still at its placeholder is refused at startup, and so is an enabled
provider with a missing key: a misconfigured callback URL or key is the classic "paid but not credited".
"""

from __future__ import annotations

from typing import Literal, Self

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from kit.settings import PLACEHOLDER_SECRET

ProviderName = Literal["stripe", "alipay", "wechatpay", "sandbox"]


class PaymentSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="ATELIER_PAYMENTS_", extra="ignore", env_file=None, populate_by_name=True
    )

    # Read from ATELIER_ENVIRONMENT like every other setting, so one switch governs the process.
    environment: Literal["development", "test", "production"] = Field(
        default="development", validation_alias="ATELIER_ENVIRONMENT"
    )
    # Providers the gateway accepts orders and callbacks for. The sandbox is the embedded default.
    enabled: list[ProviderName] = Field(default_factory=lambda: list[ProviderName](["sandbox"]))
    # Where providers send callbacks and payers come back to: the gateway's public base URL.
    public_url: str = Field(
        default="http://127.0.0.1:8000",
        validation_alias=AliasChoices("ATELIER_PAYMENTS_PUBLIC_URL", "ATELIER_PUBLIC_URL"),
    )
    # How long a payer has to pay before the ledger expires the order.
    order_ttl_minutes: int = Field(default=120, ge=5)

    # Missed callbacks: orders pending longer than this are queried at the provider.
    reconcile_after_minutes: int = Field(default=10, ge=1)
    # 0 disables the gateway's background reconciler (run `python -m gateway.payments.reconciler`).
    reconcile_interval_seconds: float = Field(default=60.0, ge=0)

    # Stripe (cards).
    stripe_secret_key: SecretStr = SecretStr(PLACEHOLDER_SECRET)
    stripe_webhook_secret: SecretStr = SecretStr(PLACEHOLDER_SECRET)
    stripe_api_base: str = "https://api.stripe.com"
    # Events whose livemode differs are refused (a test-mode event never credits a live account).
    stripe_livemode: bool = False
    stripe_tolerance_seconds: int = Field(default=300, ge=1)

    # Alipay (open platform, RSA2).
    alipay_app_id: str = ""
    # The merchant's Alipay user id (2088...), compared with seller_id in notifications.
    alipay_seller_id: str = ""
    alipay_app_private_key: SecretStr = SecretStr(PLACEHOLDER_SECRET)
    alipay_public_key: str = ""
    alipay_gateway_url: str = "https://openapi.alipay.com/gateway.do"

    # WeChat Pay API v3.
    wechatpay_mchid: str = ""
    wechatpay_appid: str = ""
    # Serial number of the merchant API certificate that signs our requests.
    wechatpay_merchant_serial: str = ""
    wechatpay_merchant_private_key: SecretStr = SecretStr(PLACEHOLDER_SECRET)
    # Platform public keys by serial (certificate serial or PUB_KEY_ID_...): several may be active
    # during a key rotation. JSON in the environment: {"PUB_KEY_ID_...": "-----BEGIN PUBLIC KEY-----..."}.
    wechatpay_platform_public_keys: dict[str, str] = Field(default_factory=dict)
    wechatpay_apiv3_key: SecretStr = SecretStr(PLACEHOLDER_SECRET)
    wechatpay_api_base: str = "https://api.mch.weixin.qq.com"
    wechatpay_window_seconds: int = Field(default=300, ge=1)

    # Sandbox: the HMAC secret its payer signs callbacks with.
    sandbox_secret: SecretStr = SecretStr(PLACEHOLDER_SECRET)
    sandbox_tolerance_seconds: int = Field(default=300, ge=1)

    def site_url(self, path: str) -> str:
        """An address on our public site; `path` starts with "/"."""
        return self.public_url.rstrip("/") + path

    def secrets_of(self, provider: ProviderName) -> dict[str, str]:
        values: dict[str, dict[str, SecretStr | str]] = {
            "stripe": {
                "stripe_secret_key": self.stripe_secret_key,
                "stripe_webhook_secret": self.stripe_webhook_secret,
            },
            "alipay": {
                "alipay_app_id": self.alipay_app_id,
                "alipay_seller_id": self.alipay_seller_id,
                "alipay_app_private_key": self.alipay_app_private_key,
                "alipay_public_key": self.alipay_public_key,
            },
            "wechatpay": {
                "wechatpay_mchid": self.wechatpay_mchid,
                "wechatpay_appid": self.wechatpay_appid,
                "wechatpay_merchant_serial": self.wechatpay_merchant_serial,
                "wechatpay_merchant_private_key": self.wechatpay_merchant_private_key,
                "wechatpay_apiv3_key": self.wechatpay_apiv3_key,
            },
            "sandbox": {"sandbox_secret": self.sandbox_secret},
        }
        return {
            name: value.get_secret_value() if isinstance(value, SecretStr) else value
            for name, value in values[provider].items()
        }

    @model_validator(mode="after")
    def _refuse_placeholders(self) -> Self:
        if self.environment == "production" and "sandbox" in self.enabled:
            # The sandbox payer hands out credits for free: never in production.
            raise ValueError("the sandbox payment provider cannot be enabled in production")
        if self.environment == "development":
            return self
        for provider in self.enabled:
            for name, value in self.secrets_of(provider).items():
                if not value or value == PLACEHOLDER_SECRET:
                    raise ValueError(f"ATELIER_PAYMENTS_{name.upper()} must be set outside development")
            if provider == "wechatpay" and not self.wechatpay_platform_public_keys:
                raise ValueError(
                    "ATELIER_PAYMENTS_WECHATPAY_PLATFORM_PUBLIC_KEYS must be set outside development"
                )
            if provider == "wechatpay" and len(self.wechatpay_apiv3_key.get_secret_value().encode()) != 32:
                raise ValueError("ATELIER_PAYMENTS_WECHATPAY_APIV3_KEY must be 32 bytes")
        return self
