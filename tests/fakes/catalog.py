"""The one in-test fake of the CatalogService: Quote over models a test lays out (`FakeModel`), GetTemplate
over given templates, GetCatalog over a given snapshot (or not_modified for the version already held), and
QuoteRecharge with the product's recharge rules. Errors carry the codes the real service answers;
`test_contract_catalog.py` runs the same requests against this fake and the real servicer."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar, TypeAlias

import grpc

from atelier.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from atelier.common.v1 import common_pb2
from kit.errors import FailedPrecondition, InvalidArgument, NotFound

Context: TypeAlias = grpc.aio.ServicerContext
KIND = {
    "text": common_pb2.MODEL_KIND_TEXT,
    "image": common_pb2.MODEL_KIND_IMAGE,
    "video": common_pb2.MODEL_KIND_VIDEO,
}
PROVIDER_OF = {"card": "stripe", "alipay": "alipay", "wechatpay": "wechatpay", "sandbox": "sandbox"}


@dataclass
class FakeModel:
    code: str
    kind: str
    unit: int
    price_milli: int
    ratios: tuple[str, ...] = ("1:1", "16:9", "9:16", "4:3", "3:4")
    resolutions: tuple[str, ...] = ("1K", "2K", "720p", "1080p")
    durations: tuple[int, ...] = (4, 5, 8, 10)
    capabilities: tuple[str, ...] = ("reference_image", "image_edit", "first_frame", "image_to_video")
    enabled: bool = True
    channel: catalog_pb2.ChannelBinding = field(
        default_factory=lambda: catalog_pb2.ChannelBinding(
            channel_code="local", adapter=catalog_pb2.ADAPTER_KIND_LOCAL
        )
    )
    input_per_1k: int = 0
    output_per_1k: int = 0


class FakeCatalog(catalog_pb2_grpc.CatalogServiceServicer):
    """`models` answer Quote, `templates` GetTemplate, `snapshot` GetCatalog; `version` is the catalog
    version quotes and templates are stamped with (the snapshot carries its own)."""

    PLANS: ClassVar[dict[str, tuple[int, int, int]]] = {
        "starter": (9900, 100_000, 0),
        "growth": (49900, 500_000, 80_000),
    }

    def __init__(
        self,
        *,
        version: int = 1,
        templates: dict[str, catalog_pb2.WorkflowTemplate] | None = None,
        snapshot: catalog_pb2.CatalogSnapshot | None = None,
    ) -> None:
        self.models: dict[str, FakeModel] = {}
        self.version = version
        self.templates = templates if templates is not None else {}
        self.snapshot = snapshot if snapshot is not None else catalog_pb2.CatalogSnapshot(version=version)
        self.known_versions: list[int] = []

    @classmethod
    def from_snapshot(cls, snapshot: catalog_pb2.CatalogSnapshot) -> FakeCatalog:
        """A fake answering for every model and template of `snapshot` (e.g. the seed's)."""
        fake = cls(
            version=snapshot.version, templates={t.code: t for t in snapshot.templates}, snapshot=snapshot
        )
        for m in snapshot.models:
            fake.models[m.code] = FakeModel(
                m.code,
                common_pb2.ModelKind.Name(m.kind).removeprefix("MODEL_KIND_").lower(),
                m.billing_unit,
                m.price.milli,
                ratios=tuple(m.ratios),
                resolutions=tuple(m.resolutions),
                durations=tuple(m.durations),
                capabilities=tuple(m.effective_capabilities),
                enabled=m.enabled,
                channel=m.channel,
                input_per_1k=m.input_price_per_1k_tokens.milli,
                output_per_1k=m.output_price_per_1k_tokens.milli,
            )
        return fake

    def change(self, edit: Callable[[catalog_pb2.CatalogSnapshot], object]) -> None:
        """Edits the snapshot as an admin would: every change is a new version."""
        edit(self.snapshot)
        self.snapshot.version += 1

    async def GetCatalog(
        self, request: catalog_pb2.GetCatalogRequest, context: Context
    ) -> catalog_pb2.GetCatalogResponse:
        self.known_versions.append(request.known_version)
        if request.known_version and request.known_version == self.snapshot.version:
            return catalog_pb2.GetCatalogResponse(not_modified=True)
        return catalog_pb2.GetCatalogResponse(catalog=self.snapshot)

    async def GetTemplate(
        self, request: catalog_pb2.GetTemplateRequest, context: Context
    ) -> catalog_pb2.GetTemplateResponse:
        template = self.templates.get(request.code)
        if template is None:
            raise NotFound("no such template", code="template_not_found")
        return catalog_pb2.GetTemplateResponse(template=template, catalog_version=self.version)

    async def Quote(self, request: catalog_pb2.QuoteRequest, context: Context) -> catalog_pb2.QuoteResponse:
        model = self.models.get(request.model_code)
        if model is None:
            raise NotFound(f"no model {request.model_code}", code="model_not_found")
        if not model.enabled:
            raise FailedPrecondition(f"{model.code} is disabled", code="model_disabled")
        if model.kind != "text":
            if request.ratio and request.ratio not in model.ratios:
                raise InvalidArgument(
                    "ratio not supported", code="unsupported_spec", allowed=",".join(model.ratios)
                )
            if request.resolution and request.resolution not in model.resolutions:
                raise InvalidArgument("resolution not supported", code="unsupported_spec")
            if model.kind == "video" and request.duration_seconds not in model.durations:
                raise InvalidArgument("duration not supported", code="unsupported_spec")
            if request.capability and request.capability not in model.capabilities:
                raise InvalidArgument("capability not supported", code="unsupported_capability")
        n = request.n or 1
        quote = catalog_pb2.QuoteSnapshot(
            model_code=model.code,
            kind=KIND[model.kind],
            unit=model.unit,  # type: ignore[arg-type]
            unit_price=common_pb2.Credits(milli=model.price_milli),
            catalog_version=self.version,
            channel=model.channel,
            ratio=request.ratio,
            resolution=request.resolution,
            duration_seconds=request.duration_seconds,
            n=n,
            capability=request.capability,
            input_price_per_1k_tokens=common_pb2.Credits(milli=model.input_per_1k),
            output_price_per_1k_tokens=common_pb2.Credits(milli=model.output_per_1k),
        )
        if model.unit == catalog_pb2.BILLING_UNIT_PER_IMAGE:
            quote.quantity, total = n, model.price_milli * n
        elif model.unit == catalog_pb2.BILLING_UNIT_PER_SECOND:
            quote.quantity, total = request.duration_seconds, model.price_milli * request.duration_seconds
        elif model.unit == catalog_pb2.BILLING_UNIT_PER_1K_TOKENS:
            quote.quantity = request.input_tokens + request.max_output_tokens
            raw = request.input_tokens * model.input_per_1k + request.max_output_tokens * model.output_per_1k
            total = -(-raw // 1000)
        else:
            quote.quantity, total = 1, model.price_milli
        quote.total.milli = 0 if request.internal else total
        quote.quoted_at.GetCurrentTime()
        return catalog_pb2.QuoteResponse(quote=quote)

    async def QuoteRecharge(
        self, request: catalog_pb2.QuoteRechargeRequest, context: Context
    ) -> catalog_pb2.QuoteRechargeResponse:
        """The product's rules: minimum 30 CNY, 300 → +30, 1000 → +150, two plans."""
        provider = PROVIDER_OF[request.method]
        if request.HasField("amount"):
            minor = request.amount.minor
            if minor < 3000:
                raise FailedPrecondition("the minimum recharge is 30 CNY", code="below_minimum_recharge")
            paid = minor * 10  # 1 CNY = 1 credit = 1000 milli; fen → milli is × 10
            bonus = paid * 15 // 100 if minor >= 100_000 else paid // 10 if minor >= 30_000 else 0
            plan = ""
        else:
            if request.plan_code not in self.PLANS:
                raise NotFound("no such plan", code="plan_not_found")
            minor, paid, bonus = self.PLANS[request.plan_code]
            plan = request.plan_code
        return catalog_pb2.QuoteRechargeResponse(
            quote=catalog_pb2.RechargeQuote(
                method=request.method,
                provider=provider,
                amount=common_pb2.Money(minor=minor, currency="CNY"),
                plan_code=plan,
                paid_credits=common_pb2.Credits(milli=paid),
                bonus_credits=common_pb2.Credits(milli=bonus),
                total_credits=common_pb2.Credits(milli=paid + bonus),
                catalog_version=self.version,
            )
        )
