"""The catalog's domain types (pydantic): what the seed file, the tables' specs, the config-version
snapshots and the service rules all speak.

Credits are integers of milli-credits. In a document (the seed YAML) a credit amount may be written
as a decimal *string* of credits ("0.5" → 500); an *int* is always milli-credits. Fiat amounts are
integers of minor units, written in documents as `{amount: "30", currency: CNY}`.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from kit.money import CURRENCY_EXPONENT, Credits, Money, MoneyParseError

Kind = Literal["text", "image", "video"]
BillingUnit = Literal["per_generation", "per_image", "per_second", "per_1k_tokens"]
Adapter = Literal["local", "openai", "ark", "xai", "gemini"]
RefundPolicy = Literal["full", "proportional"]
InputType = Literal["text", "image_uploads", "choice"]

CODE_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


def _credits(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return Credits.parse(value).milli
        except MoneyParseError as exc:
            raise ValueError(str(exc)) from exc
    return value


MilliCredits = Annotated[int, BeforeValidator(_credits), Field(ge=0)]


class _Base(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class _Coded(_Base):
    """An entry the catalog finds by its code (a model, a template, a plan, ...)."""

    code: str

    @field_validator("code")
    @classmethod
    def _check_code(cls, value: str) -> str:
        if not CODE_PATTERN.match(value):
            raise ValueError(f"{value!r} is not a valid code (lower-case letters, digits, '.', '_', '-')")
        return value


def _unique(values: list[Any], what: str) -> list[Any]:
    if len(set(values)) != len(values):
        raise ValueError(f"{what} must not repeat")
    return values


class Localized(_Base):
    zh: str = ""
    en: str = ""

    def get(self, lang: str) -> str:
        return self.zh if lang == "zh" else self.en


class Amount(_Base):
    """A fiat amount in minor units."""

    minor: int = Field(ge=0)
    currency: str

    @model_validator(mode="before")
    @classmethod
    def _from_document(cls, data: Any) -> Any:
        if isinstance(data, dict) and "amount" in data:
            try:
                money = Money.parse(data["amount"], str(data.get("currency", "")))
            except MoneyParseError as exc:
                raise ValueError(str(exc)) from exc
            return {"minor": money.minor, "currency": money.currency}
        return data

    @field_validator("currency")
    @classmethod
    def _known_currency(cls, value: str) -> str:
        if value not in CURRENCY_EXPONENT:
            raise ValueError(f"unsupported currency {value!r}")
        return value

    @property
    def money(self) -> Money:
        return Money(self.minor, self.currency)


class CapabilityName(_Coded):
    name: Localized


class ChannelBinding(_Base):
    # Empty: the local provider.
    channel_code: str = "local"
    upstream_model_id: str = ""


class ModelSpec(_Coded):
    kind: Kind
    name: Localized
    description: Localized = Field(default_factory=Localized)
    billing_unit: BillingUnit
    price: MilliCredits = 0
    input_price_per_1k_tokens: MilliCredits = 0
    output_price_per_1k_tokens: MilliCredits = 0
    ratios: list[str] = []
    resolutions: list[str] = []
    durations: list[Annotated[int, Field(gt=0, le=600)]] = []
    capabilities: list[str] = []
    inherits_default_capabilities: bool = False
    enabled: bool = False
    public: bool = False
    channel: ChannelBinding = Field(default_factory=ChannelBinding)
    sort_order: int = 0
    max_output_tokens: int = Field(default=0, ge=0)
    max_images: int = Field(default=0, ge=0, le=16)
    max_input_images: int = Field(default=0, ge=0, le=16)
    updated_at: datetime | None = None

    @field_validator("ratios", "resolutions", "durations", "capabilities")
    @classmethod
    def _no_repeats(cls, values: list[Any]) -> list[Any]:
        return _unique(values, "values")

    @model_validator(mode="after")
    def _consistent(self) -> ModelSpec:
        if self.kind == "text":
            if self.billing_unit != "per_1k_tokens":
                raise ValueError("text models are billed per_1k_tokens")
            if self.ratios or self.resolutions or self.durations:
                raise ValueError("text models have no ratios, resolutions or durations")
        else:
            if self.billing_unit == "per_1k_tokens":
                raise ValueError(f"{self.kind} models are not billed per 1k tokens")
            if not self.ratios or not self.resolutions:
                raise ValueError(f"{self.kind} models need at least one ratio and one resolution")
        if self.kind == "video" and not self.durations:
            raise ValueError("video models need at least one duration")
        if self.kind == "image" and self.durations:
            raise ValueError("image models have no durations")
        if self.billing_unit == "per_second" and self.kind != "video":
            raise ValueError("only video models are billed per second")
        return self


class TemplateInput(_Base):
    name: str = Field(min_length=1, max_length=64)
    type: InputType
    required: bool = True
    allowed_values: list[str] = []
    label: Localized = Field(default_factory=Localized)
    min_items: int = Field(default=0, ge=0)
    max_items: int = Field(default=0, ge=0)
    max_length: int = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _choices(self) -> TemplateInput:
        if self.type == "choice" and not self.allowed_values:
            raise ValueError(f"input {self.name!r} is a choice without allowed values")
        _unique(self.allowed_values, "allowed values")
        return self


class TemplateStep(_Base):
    key: str = Field(min_length=1, max_length=64)
    kind: Kind
    model_code: str
    label: Localized = Field(default_factory=Localized)
    resolution: str = ""
    duration_seconds: int = Field(default=0, ge=0)


class Template(_Coded):
    name: Localized
    description: Localized = Field(default_factory=Localized)
    price: MilliCredits
    inputs: list[TemplateInput]
    steps: list[TemplateStep] = Field(min_length=1)
    notes: Localized = Field(default_factory=Localized)
    refund_policy: RefundPolicy = "full"
    enabled: bool = False
    public: bool = False
    sort_order: int = 0
    updated_at: datetime | None = None

    @model_validator(mode="after")
    def _unique_names(self) -> Template:
        _unique([i.name for i in self.inputs], "input names")
        _unique([s.key for s in self.steps], "step keys")
        return self


class BonusTier(_Base):
    amount: Amount
    # Total credits delivered at exactly `amount` (300 CNY → 330).
    credits: MilliCredits


class RechargeRules(_Base):
    currency: str
    credits_per_major_unit: MilliCredits
    minimum: Amount
    bonus_tiers: list[BonusTier] = []
    credits_expire: bool = False

    def base_credits(self, amount: Amount) -> int:
        """Milli-credits bought by `amount` before any bonus (exact: fen × milli per yuan / 100)."""
        exponent = CURRENCY_EXPONENT[self.currency]
        # A remainder would be a fraction of a milli-credit: round down (never give away more).
        return int(amount.minor * self.credits_per_major_unit // 10**exponent)

    @model_validator(mode="after")
    def _consistent(self) -> RechargeRules:
        if self.currency not in CURRENCY_EXPONENT:
            raise ValueError(f"unsupported currency {self.currency!r}")
        if self.credits_per_major_unit <= 0:
            raise ValueError("credits_per_major_unit must be positive")
        if self.minimum.currency != self.currency:
            raise ValueError("the minimum is in another currency than the rules")
        previous = -1
        for tier in self.bonus_tiers:
            if tier.amount.currency != self.currency:
                raise ValueError("a bonus tier is in another currency than the rules")
            if tier.amount.minor <= previous:
                raise ValueError("bonus tiers must be in increasing order of amount")
            if tier.credits < self.base_credits(tier.amount):
                raise ValueError("a bonus tier delivers fewer credits than the amount buys")
            previous = tier.amount.minor
        return self


class Plan(_Coded):
    name: Localized
    price: Amount
    credits: MilliCredits
    enabled: bool = False
    sort_order: int = 0


class PaymentMethod(_Coded):
    name: Localized
    provider: str
    currencies: list[str] = Field(min_length=1)
    enabled: bool = False
    sort_order: int = 0


class Channel(_Coded):
    name: str
    adapter: Adapter
    base_url: str = ""
    # Names a secret (environment variable / mounted file); never the key itself.
    api_key_ref: str = ""
    enabled: bool = True
    max_concurrency: int = Field(default=0, ge=0)
    timeout_seconds: int = Field(default=0, ge=0)
    updated_at: datetime | None = None


class Catalog(_Base):
    """The whole configuration at one version."""

    version: int = 0
    updated_at: datetime | None = None
    capabilities: list[CapabilityName] = []
    default_capabilities: list[str] = []
    channels: list[Channel] = []
    models: list[ModelSpec] = []
    templates: list[Template] = []
    recharge_rules: RechargeRules
    plans: list[Plan] = []
    payment_methods: list[PaymentMethod] = []

    def model(self, code: str) -> ModelSpec | None:
        return next((m for m in self.models if m.code == code), None)

    def template(self, code: str) -> Template | None:
        return next((t for t in self.templates if t.code == code), None)

    def plan(self, code: str) -> Plan | None:
        return next((p for p in self.plans if p.code == code), None)

    def payment_method(self, code: str) -> PaymentMethod | None:
        return next((p for p in self.payment_methods if p.code == code), None)

    def channel(self, code: str) -> Channel | None:
        return next((c for c in self.channels if c.code == code), None)

    def effective_capabilities(self, model: ModelSpec) -> list[str]:
        return list(self.default_capabilities if model.inherits_default_capabilities else model.capabilities)

    def problems(self) -> list[str]:
        """Cross-references that do not hold (empty when the catalog is consistent)."""
        found: list[str] = []
        known = {c.code for c in self.capabilities}
        for what, codes in (
            ("capability", [c.code for c in self.capabilities]),
            ("channel", [c.code for c in self.channels]),
            ("model", [m.code for m in self.models]),
            ("template", [t.code for t in self.templates]),
            ("plan", [p.code for p in self.plans]),
            ("payment method", [p.code for p in self.payment_methods]),
        ):
            if len(set(codes)) != len(codes):
                found.append(f"{what} codes repeat")
        found += [f"unknown default capability {c!r}" for c in self.default_capabilities if c not in known]
        channels = {c.code for c in self.channels}
        for model in self.models:
            found += [
                f"model {model.code}: unknown capability {c!r}" for c in model.capabilities if c not in known
            ]
            if model.channel.channel_code and model.channel.channel_code not in channels:
                found.append(f"model {model.code}: unknown channel {model.channel.channel_code!r}")
        for template in self.templates:
            ratios = next((i.allowed_values for i in template.inputs if i.name == "ratio"), [])
            for step in template.steps:
                used = self.model(step.model_code)
                missing = [
                    r for r in ratios if used is not None and used.kind != "text" and r not in used.ratios
                ]
                if missing:
                    found.append(
                        f"template {template.code}: {step.model_code} does not support ratio {missing}"
                    )
            for step in template.steps:
                used = self.model(step.model_code)
                if used is None:
                    found.append(
                        f"template {template.code}: step {step.key} uses unknown model {step.model_code!r}"
                    )
                elif used.kind != step.kind:
                    found.append(
                        f"template {template.code}: step {step.key} ({step.kind}) uses a {used.kind} model"
                    )
        for method in self.payment_methods:
            found += [
                f"payment method {method.code}: unsupported currency {c!r}"
                for c in method.currencies
                if c not in CURRENCY_EXPONENT
            ]
        return found


class SeedFile(Catalog):
    """The seed document: a catalog plus the date its configuration was published."""

    effective_date: datetime
