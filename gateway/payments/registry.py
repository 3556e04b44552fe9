"""The provider registry: one `PaymentProvider` per enabled provider, looked up by name."""

from __future__ import annotations

from collections.abc import Mapping

import httpx

from atelier.ledger.v1 import ledger_pb2
from gateway.payments.alipay import AlipayProvider
from gateway.payments.base import OrderView, PaymentProvider
from gateway.payments.sandbox import SandboxProvider
from gateway.payments.settings import PaymentSettings
from gateway.payments.stripe_provider import StripeProvider
from gateway.payments.wechatpay import WechatPayProvider
from kit.errors import NotFound
from kit.money import Money


class PaymentGateway:
    """Every enabled provider behind the common interface (checkout, verify, query, answer)."""

    def __init__(self, providers: Mapping[str, PaymentProvider]) -> None:
        self.providers = dict(providers)

    @classmethod
    def from_settings(
        cls, settings: PaymentSettings, http: httpx.AsyncClient | None = None
    ) -> PaymentGateway:
        providers: dict[str, PaymentProvider] = {}
        for name in settings.enabled:
            if name == "stripe":
                providers[name] = StripeProvider(settings)
            elif name == "alipay":
                providers[name] = AlipayProvider(settings, http)
            elif name == "wechatpay":
                providers[name] = WechatPayProvider(settings, http)
            else:
                providers[name] = SandboxProvider(settings, http)
        return cls(providers)

    def get(self, name: str) -> PaymentProvider:
        provider = self.providers.get(name)
        if provider is None:
            raise NotFound(f"payment provider {name!r} is not enabled", code="payment_provider_disabled")
        return provider

    def route(self, provider: str) -> str:
        """The provider that takes an order meant for `provider`. Locally (development) the sandbox
        stands in for a card, Alipay or WeChat Pay provider that is not configured, so every payment
        method can be tried end to end; production never enables the sandbox."""
        if provider in self.providers:
            return provider
        if "sandbox" in self.providers:
            return "sandbox"
        raise NotFound(f"payment provider {provider!r} is not enabled", code="payment_provider_disabled")

    @property
    def sandbox(self) -> SandboxProvider | None:
        provider = self.providers.get("sandbox")
        return provider if isinstance(provider, SandboxProvider) else None


def order_view(order: ledger_pb2.RechargeOrder) -> OrderView:
    description = f"Atelier {order.plan_code} plan" if order.plan_code else "Atelier credits"
    return OrderView(
        id=order.id,
        user_id=order.user_id,
        provider=order.provider,
        amount=Money(order.amount.minor, order.amount.currency),
        description=description,
        provider_checkout_id=order.provider_checkout_id,
    )
