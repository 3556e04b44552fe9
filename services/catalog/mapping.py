"""Protobuf ↔ domain conversions for the servicer (no rules here)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict
from datetime import datetime
from typing import Any

from google.protobuf import struct_pb2
from google.protobuf.message import Message
from pydantic import BaseModel

from atelier.catalog.v1 import catalog_pb2 as pb
from atelier.common.v1 import common_pb2
from services.catalog import schemas
from services.catalog.quotes import Quote
from services.catalog.recharge import RechargeQuote
from services.catalog.repository import AuditRow

KINDS: dict[str, common_pb2.ModelKind.ValueType] = {
    "text": common_pb2.MODEL_KIND_TEXT,
    "image": common_pb2.MODEL_KIND_IMAGE,
    "video": common_pb2.MODEL_KIND_VIDEO,
}
UNITS: dict[str, pb.BillingUnit.ValueType] = {
    "per_generation": pb.BILLING_UNIT_PER_GENERATION,
    "per_image": pb.BILLING_UNIT_PER_IMAGE,
    "per_second": pb.BILLING_UNIT_PER_SECOND,
    "per_1k_tokens": pb.BILLING_UNIT_PER_1K_TOKENS,
}
ADAPTERS: dict[str, pb.AdapterKind.ValueType] = {
    "local": pb.ADAPTER_KIND_LOCAL,
    "openai": pb.ADAPTER_KIND_OPENAI,
    "ark": pb.ADAPTER_KIND_ARK,
    "xai": pb.ADAPTER_KIND_XAI,
    "gemini": pb.ADAPTER_KIND_GEMINI,
}
REFUNDS: dict[str, pb.RefundPolicy.ValueType] = {
    "full": pb.REFUND_POLICY_FULL,
    "proportional": pb.REFUND_POLICY_PROPORTIONAL,
}
INPUTS: dict[str, pb.InputType.ValueType] = {
    "text": pb.INPUT_TYPE_TEXT,
    "image_uploads": pb.INPUT_TYPE_IMAGE_UPLOADS,
    "choice": pb.INPUT_TYPE_CHOICE,
}


def _name_of(table: Mapping[str, int], value: int) -> str | None:
    """The domain name of an enum number; None for UNSPECIFIED/unknown (validation reports it)."""
    return next((name for name, number in table.items() if number == value), None)


def kind_name(value: int) -> str | None:
    return _name_of(KINDS, value)


def _plain(message: type[Message] | Message) -> dict[str, bool]:
    """The fields of `message` that hold text, numbers or flags (name → whether a list of them):
    what both sides name and write alike, so the conversions below spell out only the others."""
    return {
        f.name: f.is_repeated
        for f in message.DESCRIPTOR.fields
        if f.type not in (f.TYPE_MESSAGE, f.TYPE_ENUM)
    }


def _alike(source: object, message: type[Message]) -> dict[str, Any]:
    """The plain fields of `message` that `source` holds under the same names."""
    held = vars(source)
    return {name: held[name] for name in _plain(message) if name in held}


# -- out -----------------------------------------------------------------------------------------


def localized(text: schemas.Localized) -> common_pb2.LocalizedText:
    return common_pb2.LocalizedText(zh=text.zh, en=text.en)


def credits(milli: int) -> common_pb2.Credits:
    return common_pb2.Credits(milli=milli)


def money(amount: schemas.Amount) -> common_pb2.Money:
    return common_pb2.Money(minor=amount.minor, currency=amount.currency)


def _stamp(target: Any, value: datetime | None) -> None:
    if value is not None:
        target.FromDatetime(value)


def binding(model: schemas.ModelSpec, catalog: schemas.Catalog) -> pb.ChannelBinding:
    out = pb.ChannelBinding(
        channel_code=model.channel.channel_code,
        upstream_model_id=model.channel.upstream_model_id or model.code,
        adapter=pb.ADAPTER_KIND_LOCAL,
    )
    channel = catalog.channel(model.channel.channel_code) if model.channel.channel_code else None
    if channel is not None:
        out.adapter = ADAPTERS[channel.adapter]
        out.base_url = channel.base_url
        out.api_key_ref = channel.api_key_ref
    return out


def model(m: schemas.ModelSpec, catalog: schemas.Catalog, *, with_channel: bool) -> pb.Model:
    out = pb.Model(
        **_alike(m, pb.Model),
        kind=KINDS[m.kind],
        name=localized(m.name),
        description=localized(m.description),
        billing_unit=UNITS[m.billing_unit],
        price=credits(m.price),
        effective_capabilities=catalog.effective_capabilities(m),
        input_price_per_1k_tokens=credits(m.input_price_per_1k_tokens),
        output_price_per_1k_tokens=credits(m.output_price_per_1k_tokens),
    )
    if with_channel:
        out.channel.CopyFrom(binding(m, catalog))
    _stamp(out.updated_at, m.updated_at)
    return out


def template(t: schemas.Template) -> pb.WorkflowTemplate:
    out = pb.WorkflowTemplate(
        **_alike(t, pb.WorkflowTemplate),
        name=localized(t.name),
        description=localized(t.description),
        price=credits(t.price),
        inputs=[
            pb.TemplateInput(**_alike(i, pb.TemplateInput), type=INPUTS[i.type], label=localized(i.label))
            for i in t.inputs
        ],
        steps=[
            pb.TemplateStep(**_alike(s, pb.TemplateStep), kind=KINDS[s.kind], label=localized(s.label))
            for s in t.steps
        ],
        notes=localized(t.notes),
        refund_policy=REFUNDS[t.refund_policy],
    )
    _stamp(out.updated_at, t.updated_at)
    return out


def recharge_rules(r: schemas.RechargeRules) -> pb.RechargeRules:
    return pb.RechargeRules(
        **_alike(r, pb.RechargeRules),
        credits_per_major_unit=credits(r.credits_per_major_unit),
        minimum=money(r.minimum),
        bonus_tiers=[pb.BonusTier(amount=money(t.amount), credits=credits(t.credits)) for t in r.bonus_tiers],
    )


def plan(p: schemas.Plan) -> pb.Plan:
    return pb.Plan(
        **_alike(p, pb.Plan), name=localized(p.name), price=money(p.price), credits=credits(p.credits)
    )


def payment_method(m: schemas.PaymentMethod) -> pb.PaymentMethod:
    return pb.PaymentMethod(**_alike(m, pb.PaymentMethod), name=localized(m.name))


def channel(c: schemas.Channel) -> pb.Channel:
    out = pb.Channel(**_alike(c, pb.Channel), adapter=ADAPTERS[c.adapter])
    _stamp(out.updated_at, c.updated_at)
    return out


def capability_names(catalog: schemas.Catalog) -> list[pb.Capability]:
    return [pb.Capability(code=c.code, name=localized(c.name)) for c in catalog.capabilities]


def snapshot(catalog: schemas.Catalog) -> pb.CatalogSnapshot:
    out = pb.CatalogSnapshot(
        version=catalog.version,
        models=[model(m, catalog, with_channel=True) for m in catalog.models],
        default_capabilities=catalog.default_capabilities,
        templates=[template(t) for t in catalog.templates],
        recharge_rules=recharge_rules(catalog.recharge_rules),
        plans=[plan(p) for p in catalog.plans],
        payment_methods=[payment_method(m) for m in catalog.payment_methods],
        channels=[channel(c) for c in catalog.channels],
        capability_names=capability_names(catalog),
    )
    _stamp(out.updated_at, catalog.updated_at)
    return out


def quote(q: Quote, catalog: schemas.Catalog) -> pb.QuoteSnapshot:
    out = pb.QuoteSnapshot(
        model_code=q.model.code,
        kind=KINDS[q.model.kind],
        unit=UNITS[q.unit],
        unit_price=credits(q.unit_price),
        quantity=q.quantity,
        total=credits(q.total),
        catalog_version=q.catalog_version,
        channel=binding(q.model, catalog),
        ratio=q.params.ratio,
        resolution=q.params.resolution,
        duration_seconds=q.params.duration_seconds,
        n=q.params.n,
        capability=q.params.capability,
        input_price_per_1k_tokens=credits(q.model.input_price_per_1k_tokens),
        output_price_per_1k_tokens=credits(q.model.output_price_per_1k_tokens),
    )
    record = struct_pb2.Struct()
    record.update(
        {
            "model": q.model.model_dump(mode="json"),
            "effective_capabilities": catalog.effective_capabilities(q.model),
            "params": {k: v for k, v in asdict(q.params).items() if k not in ("model_code", "internal")},
        }
    )
    out.snapshot.CopyFrom(record)
    out.quoted_at.FromDatetime(q.quoted_at)
    return out


def recharge_quote(q: RechargeQuote) -> pb.RechargeQuote:
    return pb.RechargeQuote(
        method=q.method.code,
        provider=q.method.provider,
        amount=money(q.amount),
        plan_code=q.plan_code,
        paid_credits=credits(q.paid_credits),
        bonus_credits=credits(q.bonus_credits),
        total_credits=credits(q.total_credits),
        catalog_version=q.catalog_version,
    )


# -- in (unvalidated dicts: the service validates them with the schemas) ------------------------


def _loc(text: common_pb2.LocalizedText) -> dict[str, str]:
    return {"zh": text.zh, "en": text.en}


def _amount(value: common_pb2.Money) -> dict[str, Any]:
    return {"minor": value.minor, "currency": value.currency}


def _alike_in(message: Message, schema: type[BaseModel]) -> dict[str, Any]:
    """The plain fields of `message` that `schema` has under the same names (lists as lists)."""
    values: dict[str, Any] = {}
    for name, repeated in _plain(message).items():
        if name in schema.model_fields:
            value = getattr(message, name)
            values[name] = list(value) if repeated else value
    return values


def model_in(m: pb.Model) -> dict[str, Any]:
    return {
        **_alike_in(m, schemas.ModelSpec),
        "kind": kind_name(m.kind),
        "name": _loc(m.name),
        "description": _loc(m.description),
        "billing_unit": _name_of(UNITS, m.billing_unit),
        "price": m.price.milli,
        "input_price_per_1k_tokens": m.input_price_per_1k_tokens.milli,
        "output_price_per_1k_tokens": m.output_price_per_1k_tokens.milli,
        "channel": {
            "channel_code": m.channel.channel_code or "local",
            "upstream_model_id": m.channel.upstream_model_id,
        },
    }


def template_in(t: pb.WorkflowTemplate) -> dict[str, Any]:
    return {
        **_alike_in(t, schemas.Template),
        "name": _loc(t.name),
        "description": _loc(t.description),
        "price": t.price.milli,
        "inputs": [
            {**_alike_in(i, schemas.TemplateInput), "type": _name_of(INPUTS, i.type), "label": _loc(i.label)}
            for i in t.inputs
        ],
        "steps": [
            {**_alike_in(s, schemas.TemplateStep), "kind": kind_name(s.kind), "label": _loc(s.label)}
            for s in t.steps
        ],
        "notes": _loc(t.notes),
        "refund_policy": _name_of(REFUNDS, t.refund_policy),
    }


def recharge_rules_in(r: pb.RechargeRules) -> dict[str, Any]:
    return {
        **_alike_in(r, schemas.RechargeRules),
        "credits_per_major_unit": r.credits_per_major_unit.milli,
        "minimum": _amount(r.minimum),
        "bonus_tiers": [{"amount": _amount(t.amount), "credits": t.credits.milli} for t in r.bonus_tiers],
    }


def plan_in(p: pb.Plan) -> dict[str, Any]:
    return {
        **_alike_in(p, schemas.Plan),
        "name": _loc(p.name),
        "price": _amount(p.price),
        "credits": p.credits.milli,
    }


def channel_in(c: pb.Channel) -> dict[str, Any]:
    return {**_alike_in(c, schemas.Channel), "adapter": _name_of(ADAPTERS, c.adapter)}


def mask_fields(paths: list[str]) -> list[str] | None:
    """Top-level field names of a FieldMask (`price.milli` → `price`); None for an empty mask."""
    if not paths:
        return None
    return sorted({path.split(".")[0] for path in paths})


def audit_entry(row: AuditRow) -> pb.AuditEntry:
    out = pb.AuditEntry(**_alike(row, pb.AuditEntry), diff_json=json.dumps(row.diff, ensure_ascii=False))
    out.created_at.FromDatetime(row.created_at)
    return out
