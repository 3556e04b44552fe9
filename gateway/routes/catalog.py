"""Public catalog routes: models per studio, the Pricing page, workflow templates, recharge options
and quotes. Credits are decimal strings ("0.5"); names follow `Accept-Language: zh|en`.

Admin routes (`/v1/admin/...`) come with authentication."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from atelier.catalog.v1 import catalog_pb2 as pb
from atelier.catalog.v1 import catalog_pb2_grpc
from atelier.common.v1 import common_pb2
from gateway.convert import credits_text, money_json, names_by_value
from gateway.problems import Problem
from kit.money import Money, MoneyParseError

router = APIRouter(prefix="/v1", tags=["catalog"])

Lang = Literal["zh", "en"]
KIND_NAMES = names_by_value(common_pb2.ModelKind)
KIND_VALUES = {name: value for value, name in KIND_NAMES.items()}
UNIT_NAMES = names_by_value(pb.BillingUnit)
INPUT_NAMES = names_by_value(pb.InputType)
REFUND_NAMES = names_by_value(pb.RefundPolicy)


def language(accept_language: str | None) -> Lang:
    """The preferred of zh / en in an Accept-Language header (English when neither is asked for)."""
    candidates: list[tuple[float, int, Lang]] = []
    for position, part in enumerate((accept_language or "").split(",")):
        tag, _, params = part.strip().partition(";")
        primary = tag.strip().lower().split("-")[0]
        weight = 1.0
        key, _, value = params.strip().partition("=")
        if key.strip() == "q":
            try:
                weight = float(value)
            except ValueError:
                weight = 0.0
        if primary == "zh" and weight > 0:
            candidates.append((weight, -position, "zh"))
        elif primary == "en" and weight > 0:
            candidates.append((weight, -position, "en"))
    return max(candidates)[2] if candidates else "en"


AcceptLanguage = Annotated[str | None, Header(alias="Accept-Language")]


def _stub(request: Request) -> catalog_pb2_grpc.CatalogServiceStub:
    return catalog_pb2_grpc.CatalogServiceStub(request.app.state.clients.channels["catalog"])


def _text(text: common_pb2.LocalizedText, lang: Lang) -> str:
    return (text.zh or text.en) if lang == "zh" else (text.en or text.zh)


def _model(model: pb.Model, names: dict[str, common_pb2.LocalizedText], lang: Lang) -> dict[str, Any]:
    billing: dict[str, Any] = {"unit": UNIT_NAMES.get(model.billing_unit, "unspecified")}
    if model.billing_unit == pb.BILLING_UNIT_PER_1K_TOKENS:
        billing["input_price_per_1k_tokens"] = credits_text(model.input_price_per_1k_tokens)
        billing["output_price_per_1k_tokens"] = credits_text(model.output_price_per_1k_tokens)
    else:
        billing["price"] = credits_text(model.price)
    capabilities = [
        {"code": code, "name": _text(names[code], lang) if code in names else code.replace("_", " ")}
        for code in model.effective_capabilities
    ]
    return {
        "code": model.code,
        "kind": KIND_NAMES.get(model.kind, "unspecified"),
        "name": _text(model.name, lang),
        "description": _text(model.description, lang),
        "billing": billing,
        "ratios": list(model.ratios),
        "resolutions": list(model.resolutions),
        "durations": list(model.durations),
        "capabilities": capabilities,
        "inherits_default_capabilities": model.inherits_default_capabilities,
        "max_images": model.max_images or 1,
        "max_input_images": model.max_input_images,
        "max_output_tokens": model.max_output_tokens,
    }


def _template(template: pb.WorkflowTemplate, lang: Lang) -> dict[str, Any]:
    return {
        "code": template.code,
        "name": _text(template.name, lang),
        "description": _text(template.description, lang),
        "price": credits_text(template.price),
        "inputs": [
            {
                "name": i.name,
                "type": INPUT_NAMES.get(i.type, "unspecified"),
                "required": i.required,
                "allowed_values": list(i.allowed_values),
                "label": _text(i.label, lang),
                "min_items": i.min_items,
                "max_items": i.max_items,
                "max_length": i.max_length,
            }
            for i in template.inputs
        ],
        "required_inputs": [i.name for i in template.inputs if i.required],
        "steps": [
            {
                "key": s.key,
                "kind": KIND_NAMES.get(s.kind, "unspecified"),
                "model": s.model_code,
                "label": _text(s.label, lang),
            }
            for s in template.steps
        ],
        "notes": _text(template.notes, lang),
        "refund_policy": REFUND_NAMES.get(template.refund_policy, "unspecified"),
    }


def _names(capabilities: Any) -> dict[str, common_pb2.LocalizedText]:
    return {c.code: c.name for c in capabilities}


@router.get("/models", summary="Enabled public models for a studio")
async def list_models(
    request: Request,
    kind: Annotated[Literal["text", "image", "video"] | None, Query()] = None,
    accept_language: AcceptLanguage = None,
) -> dict[str, Any]:
    lang = language(accept_language)
    reply = await _stub(request).ListModels(
        pb.ListModelsRequest(kind=KIND_VALUES[kind] if kind else common_pb2.MODEL_KIND_UNSPECIFIED)
    )
    names = _names(reply.capability_names)
    return {
        "catalog_version": reply.catalog_version,
        "admin_must_enable_models": reply.admin_must_enable_models,
        "models": [_model(m, names, lang) for m in reply.models],
    }


@router.get("/pricing", summary="The Pricing page: enabled public models by kind, and templates")
async def pricing(request: Request, accept_language: AcceptLanguage = None) -> dict[str, Any]:
    lang = language(accept_language)
    reply = await _stub(request).GetPricing(pb.GetPricingRequest())
    names = _names(reply.capability_names)
    return {
        "catalog_version": reply.catalog_version,
        "admin_must_enable_models": reply.admin_must_enable_models,
        "groups": [
            {
                "kind": KIND_NAMES.get(g.kind, "unspecified"),
                "models": [_model(m, names, lang) for m in g.models],
            }
            for g in reply.groups
        ],
        "templates": [_template(t, lang) for t in reply.templates],
        "default_capabilities": [
            {"code": code, "name": _text(names[code], lang) if code in names else code}
            for code in reply.default_capabilities
        ],
    }


@router.get("/workflow-templates", summary="Public workflow templates with their inputs and steps")
async def workflow_templates(request: Request, accept_language: AcceptLanguage = None) -> dict[str, Any]:
    lang = language(accept_language)
    reply = await _stub(request).ListTemplates(pb.ListTemplatesRequest())
    return {
        "catalog_version": reply.catalog_version,
        "templates": [_template(t, lang) for t in reply.templates],
    }


@router.get("/recharge-options", summary="Recharge rules, plans and payment methods")
async def recharge_options(request: Request, accept_language: AcceptLanguage = None) -> dict[str, Any]:
    lang = language(accept_language)
    reply = await _stub(request).GetRechargeOptions(pb.GetRechargeOptionsRequest())
    rules = reply.rules
    return {
        "catalog_version": reply.catalog_version,
        "rules": {
            "currency": rules.currency,
            "credits_per_unit": credits_text(rules.credits_per_major_unit),
            "minimum": money_json(rules.minimum),
            "bonus_tiers": [
                {"amount": money_json(t.amount), "credits": credits_text(t.credits)}
                for t in rules.bonus_tiers
            ],
            "credits_expire": rules.credits_expire,
        },
        "plans": [
            {
                "code": p.code,
                "name": _text(p.name, lang),
                "price": money_json(p.price),
                "credits": credits_text(p.credits),
            }
            for p in reply.plans
        ],
        "payment_methods": [
            {"code": m.code, "name": _text(m.name, lang), "currencies": list(m.currencies)}
            for m in reply.methods
        ],
    }


class QuoteBody(BaseModel):
    """A generation request to validate and price (nothing is created)."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, max_length=100)
    ratio: str = Field(default="", max_length=20)
    resolution: str = Field(default="", max_length=20)
    duration_seconds: int = Field(default=0, ge=0, le=3600)
    n: int = Field(default=1, ge=1, le=16)
    capability: str = Field(default="", max_length=64)
    input_image_count: int = Field(default=0, ge=0, le=16)
    input_tokens: int = Field(default=0, ge=0, le=10_000_000)
    max_output_tokens: int = Field(default=0, ge=0, le=1_000_000)


@router.post("/quotes", summary="Validate and price a generation request")
async def quote(request: Request, body: QuoteBody) -> dict[str, Any]:
    reply = await _stub(request).Quote(
        pb.QuoteRequest(
            model_code=body.model,
            ratio=body.ratio,
            resolution=body.resolution,
            duration_seconds=body.duration_seconds,
            n=body.n,
            capability=body.capability,
            input_image_count=body.input_image_count,
            input_tokens=body.input_tokens,
            max_output_tokens=body.max_output_tokens,
            internal=False,  # internal (workflow-only) models are never quoted for the public
        )
    )
    q = reply.quote
    result: dict[str, Any] = {
        "model": q.model_code,
        "kind": KIND_NAMES.get(q.kind, "unspecified"),
        "unit": UNIT_NAMES.get(q.unit, "unspecified"),
        "quantity": q.quantity,
        "total": credits_text(q.total),
        "catalog_version": q.catalog_version,
        "quoted_at": q.quoted_at.ToDatetime().isoformat() + "Z",
    }
    if q.unit == pb.BILLING_UNIT_PER_1K_TOKENS:
        result["input_price_per_1k_tokens"] = credits_text(q.input_price_per_1k_tokens)
        result["output_price_per_1k_tokens"] = credits_text(q.output_price_per_1k_tokens)
        result["max_output_tokens"] = int(q.snapshot["params"]["max_output_tokens"])
    else:
        result.update(
            unit_price=credits_text(q.unit_price),
            ratio=q.ratio,
            resolution=q.resolution,
            duration_seconds=q.duration_seconds or None,
            n=q.n,
            capability=q.capability or None,
        )
    return result


class RechargeQuoteBody(BaseModel):
    """A recharge to price: a payment method and either an amount or a plan."""

    model_config = ConfigDict(extra="forbid")

    method: str = Field(min_length=1, max_length=32)
    amount: str | None = Field(default=None, max_length=20, examples=["300"])
    currency: str = Field(default="CNY", min_length=3, max_length=3)
    plan: str | None = Field(default=None, max_length=64)


@router.post("/recharge-quotes", summary="Credits a recharge would deliver (paid + bonus)")
async def recharge_quote(request: Request, body: RechargeQuoteBody) -> dict[str, Any]:
    if (body.amount is None) == (body.plan is None):
        raise Problem(422, "invalid_request", "give exactly one of amount or plan")
    message = pb.QuoteRechargeRequest(method=body.method)
    if body.plan is not None:
        message.plan_code = body.plan
    else:
        try:
            money = Money.parse(body.amount or "", body.currency)
        except MoneyParseError as exc:
            raise Problem(422, "invalid_amount", str(exc)) from exc
        message.amount.CopyFrom(common_pb2.Money(minor=money.minor, currency=money.currency))
    q = (await _stub(request).QuoteRecharge(message)).quote
    return {
        "method": q.method,
        "amount": money_json(q.amount),
        "plan": q.plan_code or None,
        "paid_credits": credits_text(q.paid_credits),
        "bonus_credits": credits_text(q.bonus_credits),
        "total_credits": credits_text(q.total_credits),
        "catalog_version": q.catalog_version,
    }
