"""gRPC transport for the catalog service: protobuf in, a domain call, protobuf out."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from google.protobuf import field_mask_pb2

from atelier.catalog.v1 import catalog_pb2 as pb
from atelier.catalog.v1 import catalog_pb2_grpc
from atelier.common.v1 import common_pb2
from kit.cursors import split_page
from kit.errors import InvalidArgument
from kit.identity import require_admin
from kit.outbox import Outbox
from kit.service import Runtime
from kit.text import ascii_digits
from services.catalog import changes, channels, mapping, model_specs, quotes, recharge, templates, versions
from services.catalog.schemas import Amount, Catalog, Kind

AUDIT_PAGE_DEFAULT = 50
AUDIT_PAGE_MAX = 200


class CatalogServicer(catalog_pb2_grpc.CatalogServiceServicer):
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.reader = versions.CatalogReader()

    @property
    def outbox(self) -> Outbox:
        if self.runtime.outbox is None:  # pragma: no cover - the catalog's metadata has an outbox
            raise RuntimeError("the catalog service runs without an outbox")
        return self.runtime.outbox

    async def _catalog(self) -> Catalog:
        async with self.runtime.db.transaction() as session:
            return await self.reader.current(session)

    # -- reads -----------------------------------------------------------------------------------

    async def GetCatalog(
        self, request: pb.GetCatalogRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetCatalogResponse:
        catalog = await self._catalog()
        if request.known_version and request.known_version == catalog.version:
            return pb.GetCatalogResponse(not_modified=True)
        return pb.GetCatalogResponse(catalog=mapping.snapshot(catalog))

    async def ListModels(
        self, request: pb.ListModelsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListModelsResponse:
        if request.include_disabled:
            require_admin(context)
        kind = _kind(request.kind)
        catalog = await self._catalog()
        models = model_specs.list_models(catalog, kind, request.include_disabled)
        return pb.ListModelsResponse(
            models=[mapping.model(m, catalog, with_channel=request.include_disabled) for m in models],
            catalog_version=catalog.version,
            admin_must_enable_models=model_specs.admin_must_enable_models(catalog, kind),
            capability_names=mapping.capability_names(catalog),
        )

    async def GetModel(
        self, request: pb.GetModelRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetModelResponse:
        catalog = await self._catalog()
        return pb.GetModelResponse(model=_model(catalog, request.code), catalog_version=catalog.version)

    async def GetPricing(
        self, request: pb.GetPricingRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetPricingResponse:
        catalog = await self._catalog()
        return pb.GetPricingResponse(
            groups=[
                pb.PricingGroup(
                    kind=mapping.KINDS[kind],
                    models=[mapping.model(m, catalog, with_channel=False) for m in models],
                )
                for kind, models in model_specs.pricing(catalog)
            ],
            templates=[
                mapping.template(t) for t in templates.list_templates(catalog, include_disabled=False)
            ],
            admin_must_enable_models=model_specs.admin_must_enable_models(catalog, None),
            catalog_version=catalog.version,
            capability_names=mapping.capability_names(catalog),
            default_capabilities=catalog.default_capabilities,
        )

    async def ListTemplates(
        self, request: pb.ListTemplatesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListTemplatesResponse:
        if request.include_disabled:
            require_admin(context)
        catalog = await self._catalog()
        listed = templates.list_templates(catalog, request.include_disabled)
        return pb.ListTemplatesResponse(
            templates=[mapping.template(t) for t in listed], catalog_version=catalog.version
        )

    async def GetTemplate(
        self, request: pb.GetTemplateRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetTemplateResponse:
        catalog = await self._catalog()
        return pb.GetTemplateResponse(
            template=_template(catalog, request.code), catalog_version=catalog.version
        )

    async def GetRechargeOptions(
        self, request: pb.GetRechargeOptionsRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetRechargeOptionsResponse:
        catalog = await self._catalog()
        rules, plans, methods = recharge.recharge_options(catalog)
        return pb.GetRechargeOptionsResponse(
            rules=mapping.recharge_rules(rules),
            plans=[mapping.plan(p) for p in plans],
            methods=[mapping.payment_method(m) for m in methods],
            catalog_version=catalog.version,
        )

    async def Quote(self, request: pb.QuoteRequest, context: grpc.aio.ServicerContext) -> pb.QuoteResponse:
        catalog = await self._catalog()
        # QuoteParams is QuoteRequest's fields, named alike.
        params = quotes.QuoteParams(
            **{f.name: getattr(request, f.name) for f in dataclasses.fields(quotes.QuoteParams)}
        )
        return pb.QuoteResponse(quote=mapping.quote(quotes.quote(catalog, params), catalog))

    async def QuoteRecharge(
        self, request: pb.QuoteRechargeRequest, context: grpc.aio.ServicerContext
    ) -> pb.QuoteRechargeResponse:
        catalog = await self._catalog()
        target = request.WhichOneof("target")
        amount: Amount | None = None
        if target == "amount":
            amount = _amount(request.amount)
        quote = recharge.quote_recharge(
            catalog,
            method_code=request.method,
            amount=amount,
            plan_code=request.plan_code if target == "plan_code" else "",
        )
        return pb.QuoteRechargeResponse(quote=mapping.recharge_quote(quote))

    # -- admin -----------------------------------------------------------------------------------

    async def _edit(
        self,
        context: grpc.aio.ServicerContext,
        expected_version: int,
        change: Callable[[changes.Edit], Awaitable[changes.Change]],
    ) -> Catalog:
        """Runs an admin's change in its own transaction; the catalog after it."""
        actor = require_admin(context)
        async with self.runtime.db.transaction() as session:
            done = await change(changes.Edit(session, self.outbox, actor.user_id, expected_version))
        if done.changed and self.runtime.relay is not None:
            self.runtime.relay.notify()
        return done.catalog

    async def _upsert(
        self,
        context: grpc.aio.ServicerContext,
        expected_version: int,
        entries: changes.Entries[changes.E],
        data: dict[str, Any],
        mask: field_mask_pb2.FieldMask | None = None,
    ) -> Catalog:
        fields = None if mask is None else mapping.mask_fields(list(mask.paths))
        return await self._edit(
            context, expected_version, lambda edit: changes.upsert(entries, edit, data, fields)
        )

    async def _switch(
        self,
        context: grpc.aio.ServicerContext,
        request: pb.SetModelEnabledRequest | pb.SetTemplateEnabledRequest,
        entries: changes.Entries[changes.E],
    ) -> Catalog:
        return await self._edit(
            context,
            request.expected_version,
            lambda edit: changes.set_enabled(entries, edit, request.code, request.enabled),
        )

    async def UpsertModel(
        self, request: pb.UpsertModelRequest, context: grpc.aio.ServicerContext
    ) -> pb.UpsertModelResponse:
        data = mapping.model_in(request.model)
        catalog = await self._upsert(
            context, request.expected_version, model_specs.MODELS, data, request.update_mask
        )
        return pb.UpsertModelResponse(
            model=_model(catalog, request.model.code), catalog_version=catalog.version
        )

    async def SetModelEnabled(
        self, request: pb.SetModelEnabledRequest, context: grpc.aio.ServicerContext
    ) -> pb.SetModelEnabledResponse:
        catalog = await self._switch(context, request, model_specs.MODELS)
        return pb.SetModelEnabledResponse(
            model=_model(catalog, request.code), catalog_version=catalog.version
        )

    async def SetDefaultCapabilities(
        self, request: pb.SetDefaultCapabilitiesRequest, context: grpc.aio.ServicerContext
    ) -> pb.SetDefaultCapabilitiesResponse:
        capabilities = list(request.capabilities)
        catalog = await self._edit(
            context,
            request.expected_version,
            lambda edit: model_specs.set_default_capabilities(edit, capabilities),
        )
        return pb.SetDefaultCapabilitiesResponse(
            capabilities=catalog.default_capabilities, catalog_version=catalog.version
        )

    async def UpsertTemplate(
        self, request: pb.UpsertTemplateRequest, context: grpc.aio.ServicerContext
    ) -> pb.UpsertTemplateResponse:
        data = mapping.template_in(request.template)
        catalog = await self._upsert(
            context, request.expected_version, templates.TEMPLATES, data, request.update_mask
        )
        return pb.UpsertTemplateResponse(
            template=_template(catalog, request.template.code), catalog_version=catalog.version
        )

    async def SetTemplateEnabled(
        self, request: pb.SetTemplateEnabledRequest, context: grpc.aio.ServicerContext
    ) -> pb.SetTemplateEnabledResponse:
        catalog = await self._switch(context, request, templates.TEMPLATES)
        return pb.SetTemplateEnabledResponse(
            template=_template(catalog, request.code), catalog_version=catalog.version
        )

    async def UpdateRechargeRules(
        self, request: pb.UpdateRechargeRulesRequest, context: grpc.aio.ServicerContext
    ) -> pb.UpdateRechargeRulesResponse:
        data = mapping.recharge_rules_in(request.rules)
        catalog = await self._edit(
            context, request.expected_version, lambda edit: recharge.update_recharge_rules(edit, data)
        )
        return pb.UpdateRechargeRulesResponse(
            rules=mapping.recharge_rules(catalog.recharge_rules), catalog_version=catalog.version
        )

    async def UpsertPlan(
        self, request: pb.UpsertPlanRequest, context: grpc.aio.ServicerContext
    ) -> pb.UpsertPlanResponse:
        catalog = await self._upsert(
            context, request.expected_version, recharge.PLANS, mapping.plan_in(request.plan)
        )
        plan = recharge.PLANS.get(catalog, request.plan.code)
        return pb.UpsertPlanResponse(plan=mapping.plan(plan), catalog_version=catalog.version)

    async def UpsertChannel(
        self, request: pb.UpsertChannelRequest, context: grpc.aio.ServicerContext
    ) -> pb.UpsertChannelResponse:
        data = mapping.channel_in(request.channel)
        catalog = await self._upsert(context, request.expected_version, channels.CHANNELS, data)
        channel = channels.CHANNELS.get(catalog, request.channel.code)
        return pb.UpsertChannelResponse(channel=mapping.channel(channel), catalog_version=catalog.version)

    async def ListChannels(
        self, request: pb.ListChannelsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListChannelsResponse:
        require_admin(context)
        catalog = await self._catalog()
        return pb.ListChannelsResponse(channels=[mapping.channel(c) for c in catalog.channels])

    async def ListAuditLog(
        self, request: pb.ListAuditLogRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListAuditLogResponse:
        require_admin(context)
        limit = min(request.page.limit or AUDIT_PAGE_DEFAULT, AUDIT_PAGE_MAX)
        before: int | None = None
        if request.page.cursor:
            if not ascii_digits(request.page.cursor):
                raise InvalidArgument("the cursor is not valid", code="invalid_cursor")
            before = int(request.page.cursor)
        async with self.runtime.db.transaction() as session:
            rows = await versions.audit_log(
                session,
                entity_type=request.entity_type,
                entity_code=request.entity_code,
                before_id=before,
                limit=limit + 1,
            )
        page, next_cursor = split_page(rows, limit, lambda row: str(row.id))
        entries = [mapping.audit_entry(row) for row in page]
        return pb.ListAuditLogResponse(entries=entries, page=common_pb2.PageInfo(next_cursor=next_cursor))


def _kind(value: int) -> Kind | None:
    if value == common_pb2.MODEL_KIND_UNSPECIFIED:
        return None
    name = mapping.kind_name(value)
    if name is None:
        raise InvalidArgument(f"unknown model kind {value}", code="invalid_kind")
    return name  # type: ignore[return-value]


def _amount(money: common_pb2.Money) -> Amount:
    currency = money.currency.upper()
    if money.minor <= 0:
        raise InvalidArgument("the amount must be positive", code="invalid_amount")
    try:
        return Amount(minor=money.minor, currency=currency)
    except ValueError as exc:
        raise InvalidArgument(
            f"unsupported currency {money.currency!r}", code="unsupported_currency"
        ) from exc


def _model(catalog: Catalog, code: str) -> pb.Model:
    model = model_specs.find_model(catalog, code, include_internal=True)
    return mapping.model(model, catalog, with_channel=True)


def _template(catalog: Catalog, code: str) -> pb.WorkflowTemplate:
    return mapping.template(templates.find_template(catalog, code, include_disabled=True))
