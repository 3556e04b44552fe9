"""Every request body of the admin API, validated with pydantic (422 `invalid_request`, nothing sent
on): catalog entities (models, templates, recharge rules, plans, channels, the default capability
set), each turning itself into the catalog's protobuf message, and the user changes.

A fetched entity can be sent back as it came: its read-only fields are accepted and ignored; any
other unknown field is refused. Credits are decimal strings ("0.5") in ASCII digits."""

from __future__ import annotations

import re
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

from atelier.catalog.v1 import catalog_pb2 as cpb
from atelier.common.v1 import common_pb2
from gateway.routes.admin.common import CODE
from kit.money import CURRENCY_EXPONENT, Credits, Money, MoneyParseError, amount_pattern
from kit.protoconv import enum_by_name

# A key reference names an environment variable (a mounted Secret): never the key itself.
KEY_REF = re.compile(r"^[A-Z][A-Z0-9_]{0,127}$")
MAX_ADJUSTMENT = Credits.whole(1_000_000)

KINDS = enum_by_name(common_pb2.ModelKind)
_UNITS = enum_by_name(cpb.BillingUnit)
_ADAPTERS = enum_by_name(cpb.AdapterKind)
_INPUTS = enum_by_name(cpb.InputType)
_REFUNDS = enum_by_name(cpb.RefundPolicy)

CreditsText = Annotated[
    str, StringConstraints(pattern=amount_pattern(digits=12, decimals=3)), Field(examples=["0.5", "330"])
]
SignedCreditsText = Annotated[
    str,
    StringConstraints(pattern=amount_pattern(digits=12, decimals=3, signed=True)),
    Field(examples=["50", "-1.5"]),
]
CodeText = Annotated[str, StringConstraints(pattern=CODE)]
SpecText = Annotated[str, StringConstraints(min_length=1, max_length=32, pattern=r"^[\x21-\x7e]+$")]
Name = Annotated[str, StringConstraints(max_length=200)]
LongText = Annotated[str, StringConstraints(max_length=4000)]


def credits_pb(text: str) -> common_pb2.Credits:
    return common_pb2.Credits(milli=Credits.parse(text.lstrip("+")).milli)


def known_currency(value: str) -> str:
    if value.upper() not in CURRENCY_EXPONENT:
        raise ValueError(f"unsupported currency {value!r}; one of {', '.join(sorted(CURRENCY_EXPONENT))}")
    return value.upper()


class StrictBody(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Localized(StrictBody):
    zh: Name = ""
    en: Name = ""

    def pb(self) -> common_pb2.LocalizedText:
        return common_pb2.LocalizedText(zh=self.zh, en=self.en)


class LocalizedLong(StrictBody):
    zh: LongText = ""
    en: LongText = ""

    def pb(self) -> common_pb2.LocalizedText:
        return common_pb2.LocalizedText(zh=self.zh, en=self.en)


class MoneyIn(StrictBody):
    """A fiat amount in major units, as the API shows it: {"amount": "300.00", "currency": "CNY"}."""

    amount: Annotated[str, StringConstraints(pattern=amount_pattern(digits=12, decimals=2))]
    currency: Annotated[str, StringConstraints(min_length=3, max_length=3)]

    _known = field_validator("currency")(known_currency)

    @model_validator(mode="after")
    def _exact(self) -> MoneyIn:
        self.pb()  # raises on more precision than the currency has
        return self

    def pb(self) -> common_pb2.Money:
        try:
            money = Money.parse(self.amount, self.currency)
        except MoneyParseError as exc:
            raise ValueError(str(exc)) from exc
        return common_pb2.Money(minor=money.minor, currency=money.currency)


class Versioned(StrictBody):
    """An optional optimistic-concurrency check: the catalog_version this edit was made from."""

    expected_version: int = Field(default=0, ge=0, description="0: apply whatever the current version")


class BindingIn(StrictBody):
    channel_code: Annotated[str, StringConstraints(pattern=r"^([a-z0-9][a-z0-9._-]{0,63})?$")] = ""
    upstream_model_id: Annotated[str, StringConstraints(max_length=200)] = ""
    # Resolved from the channel; accepted (and ignored) so that a fetched model can be sent back.
    adapter: str | None = None
    base_url: str | None = None
    api_key_ref: str | None = None

    def pb(self) -> cpb.ChannelBinding:
        return cpb.ChannelBinding(channel_code=self.channel_code, upstream_model_id=self.upstream_model_id)


Kind = Literal["text", "image", "video"]
Unit = Literal["per_generation", "per_image", "per_second", "per_1k_tokens"]
Ratios = Annotated[list[SpecText], Field(max_length=32)]
Durations = Annotated[list[Annotated[int, Field(gt=0, le=600)]], Field(max_length=32)]
Capabilities = Annotated[list[CodeText], Field(max_length=32)]
SortOrder = Annotated[int, Field(ge=-1_000_000, le=1_000_000)]
Count16 = Annotated[int, Field(ge=0, le=16)]
Tokens = Annotated[int, Field(ge=0, le=10_000_000)]

# Model fields that a GET answer carries but nobody writes.
_MODEL_READ_ONLY = {"code", "effective_capabilities", "updated_at", "expected_version"}


class ModelIn(Versioned):
    """A whole model (PUT creates or replaces it)."""

    kind: Kind
    name: Localized
    description: LocalizedLong = Field(default_factory=LocalizedLong)
    billing_unit: Unit
    price: CreditsText = "0"
    input_price_per_1k_tokens: CreditsText = "0"
    output_price_per_1k_tokens: CreditsText = "0"
    ratios: Ratios = []
    resolutions: Ratios = []
    durations: Durations = []
    capabilities: Capabilities = []
    inherits_default_capabilities: bool = False
    enabled: bool = False
    public: bool = False
    channel: BindingIn = Field(default_factory=BindingIn)
    sort_order: SortOrder = 0
    max_output_tokens: Tokens = 0
    max_images: Count16 = 0
    max_input_images: Count16 = 0
    # Read-only fields of the GET answer, accepted so that a fetched model can be edited and sent back.
    code: str | None = None
    effective_capabilities: list[str] | None = None
    updated_at: str | None = None


class ModelPatch(Versioned):
    """Only the fields sent change (PATCH); `null` is not a value."""

    kind: Kind | None = None
    name: Localized | None = None
    description: LocalizedLong | None = None
    billing_unit: Unit | None = None
    price: CreditsText | None = None
    input_price_per_1k_tokens: CreditsText | None = None
    output_price_per_1k_tokens: CreditsText | None = None
    ratios: Ratios | None = None
    resolutions: Ratios | None = None
    durations: Durations | None = None
    capabilities: Capabilities | None = None
    inherits_default_capabilities: bool | None = None
    enabled: bool | None = None
    public: bool | None = None
    channel: BindingIn | None = None
    sort_order: SortOrder | None = None
    max_output_tokens: Tokens | None = None
    max_images: Count16 | None = None
    max_input_images: Count16 | None = None

    @model_validator(mode="after")
    def _no_nulls(self) -> ModelPatch:
        nulls = sorted(name for name in self.model_fields_set if getattr(self, name) is None)
        if nulls:
            raise ValueError(f"these fields cannot be null: {', '.join(nulls)}")
        if not self.model_fields_set - {"expected_version"}:
            raise ValueError("nothing to change: send at least one field")
        return self


def model_pb(code: str, body: ModelIn | ModelPatch) -> tuple[cpb.Model, list[str]]:
    """The proto model and the fields it sets (every field for a whole model)."""
    sent = body.model_fields_set if isinstance(body, ModelPatch) else set(type(body).model_fields)
    fields = sorted(sent - _MODEL_READ_ONLY)
    model = cpb.Model(code=code)
    for name in fields:
        value = getattr(body, name)
        if name == "kind":
            model.kind = KINDS[value]
        elif name == "billing_unit":
            model.billing_unit = _UNITS[value]
        elif name in ("price", "input_price_per_1k_tokens", "output_price_per_1k_tokens"):
            getattr(model, name).CopyFrom(credits_pb(value))
        elif name in ("name", "description", "channel"):
            getattr(model, name).CopyFrom(value.pb())
        elif name in ("ratios", "resolutions", "durations", "capabilities"):
            getattr(model, name).extend(value)
        else:
            setattr(model, name, value)
    return model, fields


class DefaultCapabilitiesIn(Versioned):
    capabilities: Capabilities


class TemplateInputIn(StrictBody):
    name: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    type: Literal["text", "image_uploads", "choice"]
    required: bool = True
    allowed_values: Annotated[list[SpecText], Field(max_length=64)] = []
    label: Localized = Field(default_factory=Localized)
    min_items: Annotated[int, Field(ge=0, le=100)] = 0
    max_items: Annotated[int, Field(ge=0, le=100)] = 0
    max_length: Annotated[int, Field(ge=0, le=100_000)] = 0

    def pb(self) -> cpb.TemplateInput:
        return cpb.TemplateInput(
            name=self.name,
            type=_INPUTS[self.type],
            required=self.required,
            allowed_values=self.allowed_values,
            label=self.label.pb(),
            min_items=self.min_items,
            max_items=self.max_items,
            max_length=self.max_length,
        )


class TemplateStepIn(StrictBody):
    key: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    kind: Kind
    model_code: CodeText
    label: Localized = Field(default_factory=Localized)
    resolution: Annotated[str, StringConstraints(max_length=32)] = ""
    duration_seconds: Annotated[int, Field(ge=0, le=600)] = 0

    def pb(self) -> cpb.TemplateStep:
        return cpb.TemplateStep(
            key=self.key,
            kind=KINDS[self.kind],
            model_code=self.model_code,
            label=self.label.pb(),
            resolution=self.resolution,
            duration_seconds=self.duration_seconds,
        )


class TemplateIn(Versioned):
    """A whole workflow template (PUT creates or replaces it)."""

    name: Localized
    description: LocalizedLong = Field(default_factory=LocalizedLong)
    price: CreditsText
    inputs: Annotated[list[TemplateInputIn], Field(max_length=32)] = []
    steps: Annotated[list[TemplateStepIn], Field(min_length=1, max_length=32)]
    notes: LocalizedLong = Field(default_factory=LocalizedLong)
    refund_policy: Literal["full", "proportional"] = "full"
    enabled: bool = False
    public: bool = False
    sort_order: SortOrder = 0
    code: str | None = None  # read-only
    updated_at: str | None = None  # read-only

    def pb(self, code: str) -> cpb.WorkflowTemplate:
        return cpb.WorkflowTemplate(
            code=code,
            name=self.name.pb(),
            description=self.description.pb(),
            price=credits_pb(self.price),
            inputs=[i.pb() for i in self.inputs],
            steps=[s.pb() for s in self.steps],
            notes=self.notes.pb(),
            refund_policy=_REFUNDS[self.refund_policy],
            enabled=self.enabled,
            public=self.public,
            sort_order=self.sort_order,
        )


class BonusTierIn(StrictBody):
    amount: MoneyIn
    credits: CreditsText


class RechargeRulesIn(Versioned):
    currency: Annotated[str, StringConstraints(min_length=3, max_length=3)]
    credits_per_major_unit: CreditsText
    minimum: MoneyIn
    bonus_tiers: Annotated[list[BonusTierIn], Field(max_length=32)] = []
    credits_expire: bool = False

    _known = field_validator("currency")(known_currency)

    def pb(self) -> cpb.RechargeRules:
        return cpb.RechargeRules(
            currency=self.currency,
            credits_per_major_unit=credits_pb(self.credits_per_major_unit),
            minimum=self.minimum.pb(),
            bonus_tiers=[
                cpb.BonusTier(amount=t.amount.pb(), credits=credits_pb(t.credits)) for t in self.bonus_tiers
            ],
            credits_expire=self.credits_expire,
        )


class PlanIn(Versioned):
    name: Localized
    price: MoneyIn
    credits: CreditsText
    enabled: bool = False
    sort_order: SortOrder = 0
    code: str | None = None  # read-only

    def pb(self, code: str) -> cpb.Plan:
        return cpb.Plan(
            code=code,
            name=self.name.pb(),
            price=self.price.pb(),
            credits=credits_pb(self.credits),
            enabled=self.enabled,
            sort_order=self.sort_order,
        )


class ChannelIn(Versioned):
    """A provider endpoint. `api_key_ref` names the environment variable (a mounted Secret) that
    holds the key; the key itself never enters the catalog, its audit log or an answer."""

    name: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    adapter: Literal["local", "openai", "ark", "xai", "gemini"]
    base_url: Annotated[str, StringConstraints(max_length=500)] = ""
    api_key_ref: Annotated[str, StringConstraints(max_length=128)] = ""
    enabled: bool = True
    max_concurrency: Annotated[int, Field(ge=0, le=10_000)] = 0
    timeout_seconds: Annotated[int, Field(ge=0, le=3600)] = 0
    code: str | None = None  # read-only
    updated_at: str | None = None  # read-only

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value:
            return value
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("base_url must be an http(s) URL")
        if parts.username or parts.password or parts.query:
            raise ValueError("base_url must not carry credentials or a query: name the key in api_key_ref")
        return value

    @field_validator("api_key_ref")
    @classmethod
    def _reference(cls, value: str) -> str:
        if value and not KEY_REF.match(value):
            raise ValueError(
                "api_key_ref names an environment variable holding the key (e.g. ARK_API_KEY), "
                "never the key itself"
            )
        return value

    def pb(self, code: str) -> cpb.Channel:
        return cpb.Channel(
            code=code,
            name=self.name,
            adapter=_ADAPTERS[self.adapter],
            base_url=self.base_url,
            api_key_ref=self.api_key_ref,
            enabled=self.enabled,
            max_concurrency=self.max_concurrency,
            timeout_seconds=self.timeout_seconds,
        )


class UserStatusIn(StrictBody):
    status: Literal["active", "disabled"]
    reason: Annotated[str, StringConstraints(max_length=500)] = ""


class UserRoleIn(StrictBody):
    role: Literal["user", "admin"]


class AdjustmentIn(StrictBody):
    """A signed correction of a user's wallet: positive credits it, negative debits it."""

    amount: SignedCreditsText
    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]

    @field_validator("amount")
    @classmethod
    def _bounded(cls, value: str) -> str:
        credits = Credits.parse(value.lstrip("+"))
        if credits.milli == 0:
            raise ValueError("the amount must not be zero")
        if abs(credits.milli) > MAX_ADJUSTMENT.milli:
            raise ValueError(f"at most {MAX_ADJUSTMENT} credits per adjustment")
        return value
