"""Admin routes of the catalog: models, the default capability set, workflow templates, recharge
rules, plans, channels, and the catalog's audit log. Every write answers the new `catalog_version`."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Query, Request
from google.protobuf.field_mask_pb2 import FieldMask

from atelier.catalog.v1 import catalog_pb2 as cpb
from atelier.common.v1 import common_pb2
from gateway.auth import AdminPrincipal
from gateway.convert import to_json
from gateway.problems import Problem
from gateway.routes.admin.bodies import (
    KINDS,
    ChannelIn,
    DefaultCapabilitiesIn,
    Kind,
    ModelIn,
    ModelPatch,
    PlanIn,
    RechargeRulesIn,
    TemplateIn,
    Versioned,
    model_pb,
)
from gateway.routes.admin.common import Code, Cursor, Limit, as_dict, catalog_stub, page_request

router = APIRouter()


def _versioned(body: Versioned | None) -> int:
    return body.expected_version if body is not None else 0


def _check_code(path_code: str, body_code: str | None) -> None:
    if body_code is not None and body_code != path_code:
        raise Problem(422, "code_mismatch", f"the body names {body_code!r} but the path {path_code!r}")


# -- enable and disable -----------------------------------------------------------------------------
async def _set_model_enabled(
    request: Request, principal: AdminPrincipal, code: str, enabled: bool, body: Versioned | None
) -> dict[str, Any]:
    reply = await catalog_stub(request).SetModelEnabled(
        cpb.SetModelEnabledRequest(code=code, enabled=enabled, expected_version=_versioned(body)),
        metadata=principal.metadata(),
    )
    return {"catalog_version": reply.catalog_version, "model": to_json(reply.model)}


async def _set_template_enabled(
    request: Request, principal: AdminPrincipal, code: str, enabled: bool, body: Versioned | None
) -> dict[str, Any]:
    reply = await catalog_stub(request).SetTemplateEnabled(
        cpb.SetTemplateEnabledRequest(code=code, enabled=enabled, expected_version=_versioned(body)),
        metadata=principal.metadata(),
    )
    return {"catalog_version": reply.catalog_version, "template": to_json(reply.template)}


SetEnabled = Callable[[Request, AdminPrincipal, str, bool, Versioned | None], Awaitable[dict[str, Any]]]


def _switch_route(set_enabled: SetEnabled, enabled: bool) -> Callable[..., Awaitable[dict[str, Any]]]:
    async def switch(
        request: Request,
        principal: AdminPrincipal,
        code: Code,
        body: Annotated[Versioned | None, Body()] = None,
    ) -> dict[str, Any]:
        return await set_enabled(request, principal, code, enabled, body)

    return switch


def _add_switch_routes(noun: str, set_enabled: SetEnabled, on: str, off: str) -> None:
    """POST /<noun>s/{code}/enable and /disable (operations `enable_<noun>`, `disable_<noun>`),
    summarised by `on` and `off`; the body, optional, is a `Versioned` check."""
    for verb, enabled, summary in (("enable", True, on), ("disable", False, off)):
        route = _switch_route(set_enabled, enabled)
        path = f"/{noun}s/{{code}}/{verb}"
        router.add_api_route(path, route, methods=["POST"], summary=summary, name=f"{verb}_{noun}")


# -- models -----------------------------------------------------------------------------------------
@router.get("/models", summary="Every model: enabled or not, public or internal, with channel bindings")
async def list_models(
    request: Request, principal: AdminPrincipal, kind: Annotated[Kind | None, Query()] = None
) -> dict[str, Any]:
    reply = await catalog_stub(request).ListModels(
        cpb.ListModelsRequest(
            kind=KINDS[kind] if kind else common_pb2.MODEL_KIND_UNSPECIFIED, include_disabled=True
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
    reply = await catalog_stub(request).GetModel(
        cpb.GetModelRequest(code=code), metadata=principal.metadata()
    )
    return {"catalog_version": reply.catalog_version, "model": to_json(reply.model)}


async def _upsert_model(
    request: Request, principal: AdminPrincipal, code: str, body: ModelIn | ModelPatch, partial: bool
) -> dict[str, Any]:
    model, fields = model_pb(code, body)
    reply = await catalog_stub(request).UpsertModel(
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


_add_switch_routes(
    "model",
    _set_model_enabled,
    on="Enable a model: it can be quoted and (if public) listed",
    off="Disable a model: new quotes are refused with model_disabled",
)


@router.get("/default-capabilities", summary="The capability set that inheriting models use")
async def get_default_capabilities(request: Request, principal: AdminPrincipal) -> dict[str, Any]:
    catalog = (await catalog_stub(request).GetCatalog(cpb.GetCatalogRequest())).catalog
    return {
        "catalog_version": catalog.version,
        "capabilities": list(catalog.default_capabilities),
        "capability_names": [to_json(c) for c in catalog.capability_names],
    }


@router.put("/default-capabilities", summary="Replace the default capability set")
async def put_default_capabilities(
    request: Request, principal: AdminPrincipal, body: DefaultCapabilitiesIn
) -> dict[str, Any]:
    reply = await catalog_stub(request).SetDefaultCapabilities(
        cpb.SetDefaultCapabilitiesRequest(
            capabilities=body.capabilities, expected_version=body.expected_version
        ),
        metadata=principal.metadata(),
    )
    return {"catalog_version": reply.catalog_version, "capabilities": list(reply.capabilities)}


# -- templates --------------------------------------------------------------------------------------
@router.get("/templates", summary="Every workflow template, enabled or not")
async def list_templates(request: Request, principal: AdminPrincipal) -> dict[str, Any]:
    reply = await catalog_stub(request).ListTemplates(
        cpb.ListTemplatesRequest(include_disabled=True), metadata=principal.metadata()
    )
    return {"catalog_version": reply.catalog_version, "templates": [to_json(t) for t in reply.templates]}


@router.get("/templates/{code}", summary="One workflow template")
async def get_template(request: Request, principal: AdminPrincipal, code: Code) -> dict[str, Any]:
    reply = await catalog_stub(request).GetTemplate(
        cpb.GetTemplateRequest(code=code), metadata=principal.metadata()
    )
    return {"catalog_version": reply.catalog_version, "template": to_json(reply.template)}


@router.put("/templates/{code}", summary="Create or replace a workflow template")
async def put_template(
    request: Request, principal: AdminPrincipal, code: Code, body: TemplateIn
) -> dict[str, Any]:
    _check_code(code, body.code)
    reply = await catalog_stub(request).UpsertTemplate(
        cpb.UpsertTemplateRequest(template=body.pb(code), expected_version=body.expected_version),
        metadata=principal.metadata(),
    )
    return {"catalog_version": reply.catalog_version, "template": to_json(reply.template)}


_add_switch_routes(
    "template",
    _set_template_enabled,
    on="Enable a workflow template",
    off="Disable a workflow template: new runs are refused",
)


# -- recharge rules, plans and channels -------------------------------------------------------------
@router.get("/recharge-rules", summary="Recharge rules, every plan and every payment method")
async def get_recharge_rules(request: Request, principal: AdminPrincipal) -> dict[str, Any]:
    catalog = (await catalog_stub(request).GetCatalog(cpb.GetCatalogRequest())).catalog
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
    reply = await catalog_stub(request).UpdateRechargeRules(
        cpb.UpdateRechargeRulesRequest(rules=body.pb(), expected_version=body.expected_version),
        metadata=principal.metadata(),
    )
    return {"catalog_version": reply.catalog_version, "rules": to_json(reply.rules)}


@router.get("/plans", summary="Every plan, enabled or not")
async def list_plans(request: Request, principal: AdminPrincipal) -> dict[str, Any]:
    catalog = (await catalog_stub(request).GetCatalog(cpb.GetCatalogRequest())).catalog
    return {"catalog_version": catalog.version, "plans": [to_json(p) for p in catalog.plans]}


@router.put("/plans/{code}", summary="Create or replace a plan")
async def put_plan(request: Request, principal: AdminPrincipal, code: Code, body: PlanIn) -> dict[str, Any]:
    _check_code(code, body.code)
    reply = await catalog_stub(request).UpsertPlan(
        cpb.UpsertPlanRequest(plan=body.pb(code), expected_version=body.expected_version),
        metadata=principal.metadata(),
    )
    return {"catalog_version": reply.catalog_version, "plan": to_json(reply.plan)}


@router.get("/channels", summary="Provider channels (key references only, never keys)")
async def list_channels(request: Request, principal: AdminPrincipal) -> dict[str, Any]:
    reply = await catalog_stub(request).ListChannels(cpb.ListChannelsRequest(), metadata=principal.metadata())
    return {"channels": [to_json(c) for c in reply.channels]}


@router.put("/channels/{code}", summary="Create or replace a provider channel")
async def put_channel(
    request: Request, principal: AdminPrincipal, code: Code, body: ChannelIn
) -> dict[str, Any]:
    _check_code(code, body.code)
    reply = await catalog_stub(request).UpsertChannel(
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
    reply = await catalog_stub(request).ListAuditLog(
        cpb.ListAuditLogRequest(
            page=page_request(cursor, limit), entity_type=entity_type or "", entity_code=entity_code
        ),
        metadata=principal.metadata(),
    )
    items = []
    for entry in reply.entries:
        item = as_dict(entry)
        try:
            item["diff"] = json.loads(entry.diff_json) if entry.diff_json else []
        except ValueError:
            item["diff"] = None
        items.append(item)
    return {"items": items, "next_cursor": reply.page.next_cursor or None}
