"""The admin API (`/v1/admin/...`): live catalog configuration, users and credit adjustments, the
catalog's audit log, the spend debugger and the ledger's reconciliation.

Every route needs the admin role (403 `admin_required` for users, 401 without credentials); the
services check the role again from the forwarded identity. Bodies are validated here with pydantic
(422 `invalid_request`, nothing sent on) and again by the service that owns the rule (400 with its
code). Catalog edits take an optional `expected_version`: when the catalog has moved on they fail
with 409 `catalog_version_conflict` and change nothing. Credits are decimal strings ("0.5") both
ways; answers are the services' messages through `gateway.convert.to_json`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar, cast
from urllib.parse import urlsplit

import grpc
from fastapi import APIRouter, Body, Depends, Header, Path, Query, Request, Response
from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.message import Message
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

from atelier.accounts.v1 import accounts_pb2
from atelier.accounts.v1.accounts_pb2_grpc import AccountsServiceStub
from atelier.catalog.v1 import catalog_pb2 as cpb
from atelier.catalog.v1.catalog_pb2_grpc import CatalogServiceStub
from atelier.common.v1 import common_pb2
from atelier.generation.v1 import generation_pb2
from atelier.generation.v1.generation_pb2_grpc import GenerationServiceStub
from atelier.ledger.v1 import ledger_pb2
from atelier.ledger.v1.ledger_pb2_grpc import LedgerServiceStub
from atelier.workflow.v1 import workflow_pb2
from atelier.workflow.v1.workflow_pb2_grpc import WorkflowServiceStub
from gateway.auth import AdminPrincipal, require_admin
from gateway.convert import to_json
from gateway.problems import Problem
from kit.money import CURRENCY_EXPONENT, Credits, Money, MoneyParseError, amount_pattern

if TYPE_CHECKING:
    from atelier.accounts.v1.accounts_pb2_grpc import AccountsServiceAsyncStub
    from atelier.catalog.v1.catalog_pb2_grpc import CatalogServiceAsyncStub
    from atelier.generation.v1.generation_pb2_grpc import GenerationServiceAsyncStub
    from atelier.ledger.v1.ledger_pb2_grpc import LedgerServiceAsyncStub
    from atelier.workflow.v1.workflow_pb2_grpc import WorkflowServiceAsyncStub

T = TypeVar("T")
router = APIRouter(prefix="/v1/admin", tags=["admin"], dependencies=[Depends(require_admin)])

CODE = r"^[a-z0-9][a-z0-9._-]{0,63}$"
# Transfer, task, run, order and trace ids: what the ledger and the services mint.
SPEND_ID = r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,199}$"
IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")
# A key reference names an environment variable (a mounted Secret): never the key itself.
KEY_REF = re.compile(r"^[A-Z][A-Z0-9_]{0,127}$")
MAX_ADJUSTMENT = Credits.whole(1_000_000)
# Services still being built may be absent: the spend debugger waits this long for each.
AUXILIARY_TIMEOUT = 3.0

Code = Annotated[str, Path(pattern=CODE, description="lower-case letters, digits, '.', '_', '-'")]
UserId = Annotated[str, Path(pattern=r"^[0-9a-fA-F-]{32,36}$", description="the user's id (a UUID)")]
Cursor = Annotated[str, Query(max_length=512, description="next_cursor of the previous page")]
Limit = Annotated[int, Query(ge=1, le=200)]

_KINDS: dict[str, common_pb2.ModelKind.ValueType] = {
    "text": common_pb2.MODEL_KIND_TEXT,
    "image": common_pb2.MODEL_KIND_IMAGE,
    "video": common_pb2.MODEL_KIND_VIDEO,
}
_UNITS: dict[str, cpb.BillingUnit.ValueType] = {
    "per_generation": cpb.BILLING_UNIT_PER_GENERATION,
    "per_image": cpb.BILLING_UNIT_PER_IMAGE,
    "per_second": cpb.BILLING_UNIT_PER_SECOND,
    "per_1k_tokens": cpb.BILLING_UNIT_PER_1K_TOKENS,
}
_ADAPTERS: dict[str, cpb.AdapterKind.ValueType] = {
    "local": cpb.ADAPTER_KIND_LOCAL,
    "openai": cpb.ADAPTER_KIND_OPENAI,
    "ark": cpb.ADAPTER_KIND_ARK,
    "xai": cpb.ADAPTER_KIND_XAI,
    "gemini": cpb.ADAPTER_KIND_GEMINI,
}
_INPUTS: dict[str, cpb.InputType.ValueType] = {
    "text": cpb.INPUT_TYPE_TEXT,
    "image_uploads": cpb.INPUT_TYPE_IMAGE_UPLOADS,
    "choice": cpb.INPUT_TYPE_CHOICE,
}
_REFUNDS: dict[str, cpb.RefundPolicy.ValueType] = {
    "full": cpb.REFUND_POLICY_FULL,
    "proportional": cpb.REFUND_POLICY_PROPORTIONAL,
}
_STATUSES: dict[str, accounts_pb2.UserStatus.ValueType] = {
    "unverified": accounts_pb2.USER_STATUS_UNVERIFIED,
    "active": accounts_pb2.USER_STATUS_ACTIVE,
    "disabled": accounts_pb2.USER_STATUS_DISABLED,
}
_ROLES: dict[str, accounts_pb2.Role.ValueType] = {
    "user": accounts_pb2.ROLE_USER,
    "admin": accounts_pb2.ROLE_ADMIN,
}
_RECORD_TYPES: dict[str, ledger_pb2.RecordType.ValueType] = {
    "recharge": ledger_pb2.RECORD_TYPE_RECHARGE,
    "consumption": ledger_pb2.RECORD_TYPE_CONSUMPTION,
    "refund": ledger_pb2.RECORD_TYPE_REFUND,
    "adjustment": ledger_pb2.RECORD_TYPE_ADJUSTMENT,
    "callback": ledger_pb2.RECORD_TYPE_CALLBACK,
}


# -- clients ----------------------------------------------------------------------------------------
def _channel(request: Request, name: str) -> grpc.aio.Channel:
    channel: grpc.aio.Channel = request.app.state.clients.channels[name]
    return channel


def _catalog(request: Request) -> CatalogServiceAsyncStub:
    return cast("CatalogServiceAsyncStub", CatalogServiceStub(_channel(request, "catalog")))


def _ledger(request: Request) -> LedgerServiceAsyncStub:
    return cast("LedgerServiceAsyncStub", LedgerServiceStub(_channel(request, "ledger")))


def _accounts(request: Request) -> AccountsServiceAsyncStub:
    return cast("AccountsServiceAsyncStub", AccountsServiceStub(_channel(request, "accounts")))


def _generation(request: Request) -> GenerationServiceAsyncStub:
    return cast("GenerationServiceAsyncStub", GenerationServiceStub(_channel(request, "generation")))


def _workflow(request: Request) -> WorkflowServiceAsyncStub:
    return cast("WorkflowServiceAsyncStub", WorkflowServiceStub(_channel(request, "workflow")))


# -- bodies -----------------------------------------------------------------------------------------
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


def _credits_pb(text: str) -> common_pb2.Credits:
    return common_pb2.Credits(milli=Credits.parse(text.lstrip("+")).milli)


def _currency(value: str) -> str:
    if value.upper() not in CURRENCY_EXPONENT:
        raise ValueError(f"unsupported currency {value!r}; one of {', '.join(sorted(CURRENCY_EXPONENT))}")
    return value.upper()


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Localized(_Body):
    zh: Name = ""
    en: Name = ""

    def pb(self) -> common_pb2.LocalizedText:
        return common_pb2.LocalizedText(zh=self.zh, en=self.en)


class LocalizedLong(_Body):
    zh: LongText = ""
    en: LongText = ""

    def pb(self) -> common_pb2.LocalizedText:
        return common_pb2.LocalizedText(zh=self.zh, en=self.en)


class MoneyIn(_Body):
    """A fiat amount in major units, as the API shows it: {"amount": "300.00", "currency": "CNY"}."""

    amount: Annotated[str, StringConstraints(pattern=amount_pattern(digits=12, decimals=2))]
    currency: Annotated[str, StringConstraints(min_length=3, max_length=3)]

    _known = field_validator("currency")(_currency)

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


class Versioned(_Body):
    """An optional optimistic-concurrency check: the catalog_version this edit was made from."""

    expected_version: int = Field(default=0, ge=0, description="0: apply whatever the current version")


class BindingIn(_Body):
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


def _model_pb(code: str, body: ModelIn | ModelPatch) -> tuple[cpb.Model, list[str]]:
    """The proto model and the fields it sets (every field for a whole model)."""
    sent = body.model_fields_set if isinstance(body, ModelPatch) else set(type(body).model_fields)
    fields = sorted(sent - _MODEL_READ_ONLY)
    model = cpb.Model(code=code)
    for name in fields:
        value = getattr(body, name)
        if name == "kind":
            model.kind = _KINDS[value]
        elif name == "billing_unit":
            model.billing_unit = _UNITS[value]
        elif name in ("price", "input_price_per_1k_tokens", "output_price_per_1k_tokens"):
            getattr(model, name).CopyFrom(_credits_pb(value))
        elif name in ("name", "description", "channel"):
            getattr(model, name).CopyFrom(value.pb())
        elif name in ("ratios", "resolutions", "durations", "capabilities"):
            getattr(model, name).extend(value)
        else:
            setattr(model, name, value)
    return model, fields


class DefaultCapabilitiesIn(Versioned):
    capabilities: Capabilities


class TemplateInputIn(_Body):
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


class TemplateStepIn(_Body):
    key: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    kind: Kind
    model_code: CodeText
    label: Localized = Field(default_factory=Localized)
    resolution: Annotated[str, StringConstraints(max_length=32)] = ""
    duration_seconds: Annotated[int, Field(ge=0, le=600)] = 0

    def pb(self) -> cpb.TemplateStep:
        return cpb.TemplateStep(
            key=self.key,
            kind=_KINDS[self.kind],
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
            price=_credits_pb(self.price),
            inputs=[i.pb() for i in self.inputs],
            steps=[s.pb() for s in self.steps],
            notes=self.notes.pb(),
            refund_policy=_REFUNDS[self.refund_policy],
            enabled=self.enabled,
            public=self.public,
            sort_order=self.sort_order,
        )


class BonusTierIn(_Body):
    amount: MoneyIn
    credits: CreditsText


class RechargeRulesIn(Versioned):
    currency: Annotated[str, StringConstraints(min_length=3, max_length=3)]
    credits_per_major_unit: CreditsText
    minimum: MoneyIn
    bonus_tiers: Annotated[list[BonusTierIn], Field(max_length=32)] = []
    credits_expire: bool = False

    _known = field_validator("currency")(_currency)

    def pb(self) -> cpb.RechargeRules:
        return cpb.RechargeRules(
            currency=self.currency,
            credits_per_major_unit=_credits_pb(self.credits_per_major_unit),
            minimum=self.minimum.pb(),
            bonus_tiers=[
                cpb.BonusTier(amount=t.amount.pb(), credits=_credits_pb(t.credits)) for t in self.bonus_tiers
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
            credits=_credits_pb(self.credits),
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


class UserStatusIn(_Body):
    status: Literal["active", "disabled"]
    reason: Annotated[str, StringConstraints(max_length=500)] = ""


class UserRoleIn(_Body):
    role: Literal["user", "admin"]


class AdjustmentIn(_Body):
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


# -- helpers ----------------------------------------------------------------------------------------
def _versioned(body: Versioned | None) -> int:
    return body.expected_version if body is not None else 0


def _check_code(path_code: str, body_code: str | None) -> None:
    if body_code is not None and body_code != path_code:
        raise Problem(422, "code_mismatch", f"the body names {body_code!r} but the path {path_code!r}")


def _page(cursor: str, limit: int) -> common_pb2.PageRequest:
    return common_pb2.PageRequest(cursor=cursor, limit=limit)


def _json(message: Message) -> dict[str, Any]:
    body: dict[str, Any] = to_json(message)
    return body


def transfer_id_for(admin_id: str, idempotency_key: str) -> str:
    """The same admin and key always name the same adjustment; different admins never collide."""
    digest = hashlib.sha256(f"{admin_id}\x00{idempotency_key}".encode()).hexdigest()
    return f"adj_{digest[:32]}"


def _require_key(idempotency_key: str | None) -> str:
    if not idempotency_key or not IDEMPOTENCY_KEY.match(idempotency_key):
        raise Problem(
            400, "idempotency_key_required", "send an Idempotency-Key header (1-255 visible characters)"
        )
    return idempotency_key


# -- models -----------------------------------------------------------------------------------------
@router.get("/models", summary="Every model: enabled or not, public or internal, with channel bindings")
async def list_models(
    request: Request, principal: AdminPrincipal, kind: Annotated[Kind | None, Query()] = None
) -> dict[str, Any]:
    reply = await _catalog(request).ListModels(
        cpb.ListModelsRequest(
            kind=_KINDS[kind] if kind else common_pb2.MODEL_KIND_UNSPECIFIED, include_disabled=True
        ),
        metadata=principal.metadata(),
    )
    return {
        "catalog_version": reply.catalog_version,
        "admin_must_enable_models": reply.admin_must_enable_models,
        "models": [to_json(m) for m in reply.models],
        "capability_names": [to_json(c) for c in reply.capability_names],
    }


@router.get("/models/{code}", summary="One model, as admins edit it")
async def get_model(request: Request, principal: AdminPrincipal, code: Code) -> dict[str, Any]:
    reply = await _catalog(request).GetModel(cpb.GetModelRequest(code=code), metadata=principal.metadata())
    return {"catalog_version": reply.catalog_version, "model": to_json(reply.model)}


async def _upsert_model(
    request: Request, principal: AdminPrincipal, code: str, body: ModelIn | ModelPatch, partial: bool
) -> dict[str, Any]:
    model, fields = _model_pb(code, body)
    reply = await _catalog(request).UpsertModel(
        cpb.UpsertModelRequest(
            model=model,
            update_mask=FieldMask(paths=fields if partial else []),
            expected_version=body.expected_version,
        ),
        metadata=principal.metadata(),
    )
    return {"catalog_version": reply.catalog_version, "model": to_json(reply.model)}


@router.put("/models/{code}", summary="Create or replace a model (price, specs, capabilities, names, ...)")
async def put_model(request: Request, principal: AdminPrincipal, code: Code, body: ModelIn) -> dict[str, Any]:
    _check_code(code, body.code)
    return await _upsert_model(request, principal, code, body, partial=False)


@router.patch("/models/{code}", summary="Change some fields of a model; the others stay")
async def patch_model(
    request: Request, principal: AdminPrincipal, code: Code, body: ModelPatch
) -> dict[str, Any]:
    return await _upsert_model(request, principal, code, body, partial=True)


async def _set_model_enabled(
    request: Request, principal: AdminPrincipal, code: str, enabled: bool, body: Versioned | None
) -> dict[str, Any]:
    reply = await _catalog(request).SetModelEnabled(
        cpb.SetModelEnabledRequest(code=code, enabled=enabled, expected_version=_versioned(body)),
        metadata=principal.metadata(),
    )
    return {"catalog_version": reply.catalog_version, "model": to_json(reply.model)}


@router.post("/models/{code}/enable", summary="Enable a model: it can be quoted and (if public) listed")
async def enable_model(
    request: Request, principal: AdminPrincipal, code: Code, body: Annotated[Versioned | None, Body()] = None
) -> dict[str, Any]:
    return await _set_model_enabled(request, principal, code, True, body)


@router.post("/models/{code}/disable", summary="Disable a model: new quotes are refused with model_disabled")
async def disable_model(
    request: Request, principal: AdminPrincipal, code: Code, body: Annotated[Versioned | None, Body()] = None
) -> dict[str, Any]:
    return await _set_model_enabled(request, principal, code, False, body)


@router.get("/default-capabilities", summary="The capability set that inheriting models use")
async def get_default_capabilities(request: Request, principal: AdminPrincipal) -> dict[str, Any]:
    catalog = (await _catalog(request).GetCatalog(cpb.GetCatalogRequest())).catalog
    return {
        "catalog_version": catalog.version,
        "capabilities": list(catalog.default_capabilities),
        "capability_names": [to_json(c) for c in catalog.capability_names],
    }


@router.put("/default-capabilities", summary="Replace the default capability set")
async def put_default_capabilities(
    request: Request, principal: AdminPrincipal, body: DefaultCapabilitiesIn
) -> dict[str, Any]:
    reply = await _catalog(request).SetDefaultCapabilities(
        cpb.SetDefaultCapabilitiesRequest(
            capabilities=body.capabilities, expected_version=body.expected_version
        ),
        metadata=principal.metadata(),
    )
    return {"catalog_version": reply.catalog_version, "capabilities": list(reply.capabilities)}


# -- templates --------------------------------------------------------------------------------------
@router.get("/templates", summary="Every workflow template, enabled or not")
async def list_templates(request: Request, principal: AdminPrincipal) -> dict[str, Any]:
    reply = await _catalog(request).ListTemplates(
        cpb.ListTemplatesRequest(include_disabled=True), metadata=principal.metadata()
    )
    return {"catalog_version": reply.catalog_version, "templates": [to_json(t) for t in reply.templates]}


@router.get("/templates/{code}", summary="One workflow template")
async def get_template(request: Request, principal: AdminPrincipal, code: Code) -> dict[str, Any]:
    reply = await _catalog(request).GetTemplate(
        cpb.GetTemplateRequest(code=code), metadata=principal.metadata()
    )
    return {"catalog_version": reply.catalog_version, "template": to_json(reply.template)}


@router.put("/templates/{code}", summary="Create or replace a workflow template")
async def put_template(
    request: Request, principal: AdminPrincipal, code: Code, body: TemplateIn
) -> dict[str, Any]:
    _check_code(code, body.code)
    reply = await _catalog(request).UpsertTemplate(
        cpb.UpsertTemplateRequest(template=body.pb(code), expected_version=body.expected_version),
        metadata=principal.metadata(),
    )
    return {"catalog_version": reply.catalog_version, "template": to_json(reply.template)}


async def _set_template_enabled(
    request: Request, principal: AdminPrincipal, code: str, enabled: bool, body: Versioned | None
) -> dict[str, Any]:
    reply = await _catalog(request).SetTemplateEnabled(
        cpb.SetTemplateEnabledRequest(code=code, enabled=enabled, expected_version=_versioned(body)),
        metadata=principal.metadata(),
    )
    return {"catalog_version": reply.catalog_version, "template": to_json(reply.template)}


@router.post("/templates/{code}/enable", summary="Enable a workflow template")
async def enable_template(
    request: Request, principal: AdminPrincipal, code: Code, body: Annotated[Versioned | None, Body()] = None
) -> dict[str, Any]:
    return await _set_template_enabled(request, principal, code, True, body)


@router.post("/templates/{code}/disable", summary="Disable a workflow template: new runs are refused")
async def disable_template(
    request: Request, principal: AdminPrincipal, code: Code, body: Annotated[Versioned | None, Body()] = None
) -> dict[str, Any]:
    return await _set_template_enabled(request, principal, code, False, body)


# -- recharge rules, plans and channels -------------------------------------------------------------
@router.get("/recharge-rules", summary="Recharge rules, every plan and every payment method")
async def get_recharge_rules(request: Request, principal: AdminPrincipal) -> dict[str, Any]:
    catalog = (await _catalog(request).GetCatalog(cpb.GetCatalogRequest())).catalog
    return {
        "catalog_version": catalog.version,
        "rules": to_json(catalog.recharge_rules),
        "plans": [to_json(p) for p in catalog.plans],
        "payment_methods": [to_json(m) for m in catalog.payment_methods],
    }


@router.put("/recharge-rules", summary="Replace the recharge rules (rate, minimum, bonus tiers)")
async def put_recharge_rules(
    request: Request, principal: AdminPrincipal, body: RechargeRulesIn
) -> dict[str, Any]:
    reply = await _catalog(request).UpdateRechargeRules(
        cpb.UpdateRechargeRulesRequest(rules=body.pb(), expected_version=body.expected_version),
        metadata=principal.metadata(),
    )
    return {"catalog_version": reply.catalog_version, "rules": to_json(reply.rules)}


@router.get("/plans", summary="Every plan, enabled or not")
async def list_plans(request: Request, principal: AdminPrincipal) -> dict[str, Any]:
    catalog = (await _catalog(request).GetCatalog(cpb.GetCatalogRequest())).catalog
    return {"catalog_version": catalog.version, "plans": [to_json(p) for p in catalog.plans]}


@router.put("/plans/{code}", summary="Create or replace a plan")
async def put_plan(request: Request, principal: AdminPrincipal, code: Code, body: PlanIn) -> dict[str, Any]:
    _check_code(code, body.code)
    reply = await _catalog(request).UpsertPlan(
        cpb.UpsertPlanRequest(plan=body.pb(code), expected_version=body.expected_version),
        metadata=principal.metadata(),
    )
    return {"catalog_version": reply.catalog_version, "plan": to_json(reply.plan)}


@router.get("/channels", summary="Provider channels (key references only, never keys)")
async def list_channels(request: Request, principal: AdminPrincipal) -> dict[str, Any]:
    reply = await _catalog(request).ListChannels(cpb.ListChannelsRequest(), metadata=principal.metadata())
    return {"channels": [to_json(c) for c in reply.channels]}


@router.put("/channels/{code}", summary="Create or replace a provider channel")
async def put_channel(
    request: Request, principal: AdminPrincipal, code: Code, body: ChannelIn
) -> dict[str, Any]:
    _check_code(code, body.code)
    reply = await _catalog(request).UpsertChannel(
        cpb.UpsertChannelRequest(channel=body.pb(code), expected_version=body.expected_version),
        metadata=principal.metadata(),
    )
    return {"catalog_version": reply.catalog_version, "channel": to_json(reply.channel)}


# -- audit ------------------------------------------------------------------------------------------
@router.get("/audit", summary="The catalog's change log, newest first: actor, time, action and diff")
async def audit(
    request: Request,
    principal: AdminPrincipal,
    entity_type: Annotated[
        Literal["model", "template", "recharge_rules", "plan", "channel", "default_capabilities"] | None,
        Query(),
    ] = None,
    entity_code: Annotated[str, Query(max_length=64)] = "",
    cursor: Cursor = "",
    limit: Limit = 50,
) -> dict[str, Any]:
    reply = await _catalog(request).ListAuditLog(
        cpb.ListAuditLogRequest(
            page=_page(cursor, limit), entity_type=entity_type or "", entity_code=entity_code
        ),
        metadata=principal.metadata(),
    )
    items = []
    for entry in reply.entries:
        item = _json(entry)
        try:
            item["diff"] = json.loads(entry.diff_json) if entry.diff_json else []
        except ValueError:
            item["diff"] = None
        items.append(item)
    return {"items": items, "next_cursor": reply.page.next_cursor or None}


# -- users ------------------------------------------------------------------------------------------
@router.get("/users", summary="Users, oldest first, filtered by email, status or role")
async def list_users(
    request: Request,
    principal: AdminPrincipal,
    email: Annotated[str, Query(max_length=320, description="substring, case-insensitive")] = "",
    status: Annotated[Literal["unverified", "active", "disabled"] | None, Query()] = None,
    role: Annotated[Literal["user", "admin"] | None, Query()] = None,
    cursor: Cursor = "",
    limit: Limit = 50,
) -> dict[str, Any]:
    reply = await _accounts(request).ListUsers(
        accounts_pb2.ListUsersRequest(
            page=_page(cursor, limit),
            email_query=email,
            status=_STATUSES[status] if status else accounts_pb2.USER_STATUS_UNSPECIFIED,
            role=_ROLES[role] if role else accounts_pb2.ROLE_UNSPECIFIED,
        ),
        metadata=principal.metadata(),
    )
    return {"items": [to_json(u) for u in reply.users], "next_cursor": reply.page.next_cursor or None}


async def _user(request: Request, principal: AdminPrincipal, user_id: str) -> accounts_pb2.User:
    reply: accounts_pb2.GetUserResponse = await _accounts(request).GetUser(
        accounts_pb2.GetUserRequest(user_id=user_id), metadata=principal.metadata()
    )
    return reply.user


@router.get("/users/{user_id}", summary="One user with their balance from the ledger")
async def get_user(request: Request, principal: AdminPrincipal, user_id: UserId) -> dict[str, Any]:
    user = await _user(request, principal, user_id)
    balance = await _ledger(request).GetBalance(
        ledger_pb2.GetBalanceRequest(user_id=user.id), metadata=principal.metadata()
    )
    return {"user": to_json(user), "balance": to_json(balance.balance)}


@router.get("/users/{user_id}/records", summary="A user's billing records, newest first")
async def user_records(
    request: Request,
    principal: AdminPrincipal,
    user_id: UserId,
    type: Annotated[
        list[Literal["recharge", "consumption", "refund", "adjustment", "callback"]] | None, Query()
    ] = None,
    cursor: Cursor = "",
    limit: Limit = 50,
) -> dict[str, Any]:
    user = await _user(request, principal, user_id)
    reply = await _ledger(request).ListRecords(
        ledger_pb2.ListRecordsRequest(
            user_id=user.id, page=_page(cursor, limit), types=[_RECORD_TYPES[t] for t in type or []]
        ),
        metadata=principal.metadata(),
    )
    return {"items": [to_json(r) for r in reply.records], "next_cursor": reply.page.next_cursor or None}


_CALLBACK_OUTCOMES: dict[str, ledger_pb2.CallbackOutcome.ValueType] = {
    "credited": ledger_pb2.CALLBACK_OUTCOME_CREDITED,
    "duplicate": ledger_pb2.CALLBACK_OUTCOME_DUPLICATE,
    "ignored": ledger_pb2.CALLBACK_OUTCOME_IGNORED,
    "rejected": ledger_pb2.CALLBACK_OUTCOME_REJECTED,
    "error": ledger_pb2.CALLBACK_OUTCOME_ERROR,
}


@router.get("/callbacks", summary="The payment callback log, newest first: every delivery, verified or not")
async def callback_log(
    request: Request,
    principal: AdminPrincipal,
    order_id: Annotated[str, Query(max_length=64)] = "",
    user_id: Annotated[str, Query(max_length=64)] = "",
    provider: Annotated[str, Query(max_length=32)] = "",
    outcome: Literal["credited", "duplicate", "ignored", "rejected", "error"] | None = None,
    cursor: Cursor = "",
    limit: Limit = 50,
) -> dict[str, Any]:
    """Forged and unverifiable deliveries are here only: a user's records show verified ones."""
    reply = await _ledger(request).ListCallbacks(
        ledger_pb2.ListCallbacksRequest(
            page=_page(cursor, limit),
            order_id=order_id,
            user_id=user_id,
            provider=provider,
            outcome=_CALLBACK_OUTCOMES[outcome] if outcome else ledger_pb2.CALLBACK_OUTCOME_UNSPECIFIED,
        ),
        metadata=principal.metadata(),
    )
    return {"items": [to_json(c) for c in reply.callbacks], "next_cursor": reply.page.next_cursor or None}


@router.post("/users/{user_id}/status", summary="Activate or disable a user (disabling ends their sessions)")
async def set_user_status(
    request: Request, principal: AdminPrincipal, user_id: UserId, body: UserStatusIn
) -> dict[str, Any]:
    reply = await _accounts(request).SetUserStatus(
        accounts_pb2.SetUserStatusRequest(user_id=user_id, status=_STATUSES[body.status], reason=body.reason),
        metadata=principal.metadata(),
    )
    return {"user": to_json(reply.user)}


@router.post("/users/{user_id}/role", summary="Make a user an admin, or an admin a user")
async def set_user_role(
    request: Request, principal: AdminPrincipal, user_id: UserId, body: UserRoleIn
) -> dict[str, Any]:
    reply = await _accounts(request).SetUserRole(
        accounts_pb2.SetUserRoleRequest(user_id=user_id, role=_ROLES[body.role]),
        metadata=principal.metadata(),
    )
    return {"user": to_json(reply.user)}


@router.post(
    "/users/{user_id}/credit-adjustments",
    status_code=201,
    summary="Credit (positive) or debit (negative) a user's wallet, once per Idempotency-Key",
)
async def adjust_credits(
    request: Request,
    response: Response,
    principal: AdminPrincipal,
    user_id: UserId,
    body: AdjustmentIn,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> dict[str, Any]:
    key = _require_key(idempotency_key)
    user = await _user(request, principal, user_id)  # 404 for an unknown user: no wallet is made
    reply = await _ledger(request).Adjust(
        ledger_pb2.AdjustRequest(
            transfer_id=transfer_id_for(principal.user_id, key),
            user_id=user.id,
            amount=_credits_pb(body.amount),
            reason=body.reason,
            actor_id=principal.user_id,
        ),
        metadata=principal.metadata(),
    )
    if reply.replayed:
        response.status_code = 200
    return {
        "transfer": to_json(reply.transfer),
        "balance": to_json(reply.balance),
        "replayed": reply.replayed,
    }


# -- spend debugging --------------------------------------------------------------------------------


async def _ask(call: Awaitable[T]) -> tuple[str, T | None]:
    """A call to a service that may be missing or unfinished: ("ok", reply) or (what went wrong, None)."""
    try:
        return "ok", await call
    except grpc.aio.AioRpcError as exc:
        code = exc.code()
        if code in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.PERMISSION_DENIED):
            return "not_found", None
        if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            return "unavailable", None
        if code == grpc.StatusCode.UNIMPLEMENTED:
            return "unimplemented", None
        return "error", None


def _trace_link(template: str, trace_id: str) -> str:
    return template.replace("{trace_id}", trace_id)


@router.get(
    "/spend/{spend_id}",
    summary="The whole chain behind a transfer, task, run, order or trace id, with trace links",
)
async def spend(
    request: Request, principal: AdminPrincipal, spend_id: Annotated[str, Path(pattern=SPEND_ID)]
) -> dict[str, Any]:
    metadata = principal.metadata()
    sources: dict[str, str] = {}
    status, chain = await _ask(
        _ledger(request).GetSpendChain(ledger_pb2.GetSpendChainRequest(id=spend_id), metadata=metadata)
    )
    sources["ledger"] = status
    reference = chain.reference if chain is not None else None
    task_id = run_id = ""
    if reference is not None and reference.id:
        if reference.type == ledger_pb2.REFERENCE_TYPE_TASK:
            task_id = reference.id
        elif reference.type == ledger_pb2.REFERENCE_TYPE_RUN:
            run_id = reference.id
    elif chain is None:  # the ledger knows nothing: the id may still be a task or a run
        task_id = run_id = spend_id

    async def task_of(some_id: str) -> tuple[str, generation_pb2.GetTaskResponse | None]:
        if not some_id:
            return "skipped", None
        return await _ask(
            _generation(request).GetTask(
                generation_pb2.GetTaskRequest(task_id=some_id), metadata=metadata, timeout=AUXILIARY_TIMEOUT
            )
        )

    async def run_of(some_id: str) -> tuple[str, workflow_pb2.GetRunResponse | None]:
        if not some_id:
            return "skipped", None
        return await _ask(
            _workflow(request).GetRun(
                workflow_pb2.GetRunRequest(run_id=some_id), metadata=metadata, timeout=AUXILIARY_TIMEOUT
            )
        )

    (sources["generation"], task_reply), (sources["workflow"], run_reply) = await asyncio.gather(
        task_of(task_id), run_of(run_id)
    )
    task = task_reply.task if task_reply is not None else None
    if run_reply is None and task is not None and task.workflow_step.run_id:
        # A workflow step's task: its run carries the charge.
        sources["workflow"], run_reply = await run_of(task.workflow_step.run_id)
    run = run_reply.run if run_reply is not None else None

    if chain is None and task is None and run is None:
        if sources["ledger"] == "unavailable":
            raise Problem(
                503, "upstream_unavailable", "the ledger could not be asked; try again", sources=sources
            )
        raise Problem(404, "not_found", f"nothing is known about {spend_id!r}", sources=sources)

    template: str = request.app.state.settings.tracing_ui_url
    trace_ids: list[str] = []

    def traced(item: dict[str, Any], trace_id: str) -> dict[str, Any]:
        if trace_id:
            item["trace_url"] = _trace_link(template, trace_id)
            if trace_id not in trace_ids:
                trace_ids.append(trace_id)
        return item

    body: dict[str, Any] = {
        "id": spend_id,
        "reference": None,
        "task": traced(_json(task), task.trace_id) if task is not None else None,
        "run": traced(_json(run), run.trace_id) if run is not None else None,
        "transfers": [],
        "order": None,
        "callbacks": [],
    }
    if chain is not None:
        if chain.reference.id:
            body["reference"] = _json(chain.reference)
        body["transfers"] = [traced(_json(t), t.trace_id) for t in chain.transfers]
        if chain.HasField("order"):
            body["order"] = traced(_json(chain.order), chain.order.trace_id)
        body["callbacks"] = [traced(_json(c), c.trace_id) for c in chain.callbacks]
        for trace_id in chain.trace_ids:
            if trace_id not in trace_ids:
                trace_ids.append(trace_id)
    body["traces"] = [{"trace_id": t, "url": _trace_link(template, t)} for t in trace_ids]
    body["sources"] = sources
    return body


# -- reconciliation ---------------------------------------------------------------------------------
@router.get("/reconcile", summary="Check every ledger invariant; an empty violation list means healthy")
async def reconcile(request: Request, principal: AdminPrincipal) -> dict[str, Any]:
    reply = await _ledger(request).Reconcile(ledger_pb2.ReconcileRequest(), metadata=principal.metadata())
    body = _json(reply)
    body["healthy"] = not reply.violations
    return body
