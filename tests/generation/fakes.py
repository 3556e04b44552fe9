"""In-test fake of the catalog's Quote, served with the shared ledger fake (`tests/fakes/ledger.py`) as real
grpc.aio servers that follow the contracts (domain errors with their codes, idempotent holds, a real
balance check)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from atelier.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from atelier.common.v1 import common_pb2
from atelier.ledger.v1 import ledger_pb2_grpc
from kit.errors import FailedPrecondition, InvalidArgument, NotFound
from kit.grpc_server import GrpcServer
from tests.fakes.ledger import FakeLedger

KIND = {
    "text": common_pb2.MODEL_KIND_TEXT,
    "image": common_pb2.MODEL_KIND_IMAGE,
    "video": common_pb2.MODEL_KIND_VIDEO,
}


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
    def __init__(self) -> None:
        self.models: dict[str, FakeModel] = {}
        self.version = 1

    async def Quote(self, request: catalog_pb2.QuoteRequest, context: Any) -> catalog_pb2.QuoteResponse:
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


async def start_fakes(catalog: FakeCatalog, ledger: FakeLedger) -> GrpcServer:
    server = GrpcServer("fakes", host="127.0.0.1", port=0)
    catalog_pb2_grpc.add_CatalogServiceServicer_to_server(catalog, server.server)
    ledger_pb2_grpc.add_LedgerServiceServicer_to_server(ledger, server.server)
    await server.start()
    return server
