"""In-test grpc.aio fakes of exactly the RPCs the workflow calls: catalog GetTemplate, ledger Debit and
Refund (with a real balance check and id idempotency), generation SubmitTask (recording submissions,
idempotent per user + key) and GetUpload. Step completions go out as real `tasks.completed` events."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from atelier.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from atelier.common.v1 import common_pb2
from atelier.generation.v1 import generation_pb2_grpc
from atelier.ledger.v1 import ledger_pb2_grpc
from kit.bus import Bus
from kit.grpc_server import GrpcServer
from tests.fakes.catalog import FakeCatalog
from tests.fakes.generation import FakeGeneration
from tests.fakes.ledger import FakeLedger

RATIOS = ("16:9", "9:16", "1:1")
TONES = ("professional", "friendly", "energetic")


def _text(zh: str, en: str) -> common_pb2.LocalizedText:
    return common_pb2.LocalizedText(zh=zh, en=en)


def _inputs(*names: str) -> list[catalog_pb2.TemplateInput]:
    specs = {
        "productText": catalog_pb2.TemplateInput(
            name="productText", type=catalog_pb2.INPUT_TYPE_TEXT, required=True, max_length=500
        ),
        "productPhotos": catalog_pb2.TemplateInput(
            name="productPhotos",
            type=catalog_pb2.INPUT_TYPE_IMAGE_UPLOADS,
            required=True,
            min_items=1,
            max_items=4,
        ),
        "ratio": catalog_pb2.TemplateInput(
            name="ratio", type=catalog_pb2.INPUT_TYPE_CHOICE, required=True, allowed_values=RATIOS
        ),
        "tone": catalog_pb2.TemplateInput(
            name="tone", type=catalog_pb2.INPUT_TYPE_CHOICE, required=True, allowed_values=TONES
        ),
    }
    return [specs[name] for name in names]


def _step(key: str, kind: common_pb2.ModelKind.ValueType, model: str) -> catalog_pb2.TemplateStep:
    step = catalog_pb2.TemplateStep(key=key, kind=kind, model_code=model)
    if kind == common_pb2.MODEL_KIND_VIDEO:
        step.duration_seconds = 5
    return step


TEXT, IMAGE, VIDEO = common_pb2.MODEL_KIND_TEXT, common_pb2.MODEL_KIND_IMAGE, common_pb2.MODEL_KIND_VIDEO


def seed_templates() -> dict[str, catalog_pb2.WorkflowTemplate]:
    """The three templates of the product document."""
    four = ("productText", "productPhotos", "ratio", "tone")
    return {
        "health-supplement": catalog_pb2.WorkflowTemplate(
            code="health-supplement",
            name=_text("保健品宣传视频", "Health supplement promo video"),
            price=common_pb2.Credits(milli=1000),
            inputs=_inputs(*four),
            steps=[
                _step("prompt-image", TEXT, "gemini-2.5-pro"),
                _step("image", IMAGE, "google-flow-image"),
                _step("prompt-video", TEXT, "gemini-2.5-pro"),
                _step("video", VIDEO, "google-flow-video"),
            ],
            refund_policy=catalog_pb2.REFUND_POLICY_FULL,
            enabled=True,
            public=True,
        ),
        "creator-video": catalog_pb2.WorkflowTemplate(
            code="creator-video",
            name=_text("达人视频制作", "Creator video"),
            price=common_pb2.Credits(milli=20000),
            inputs=_inputs(*four),
            steps=[
                _step("prompt-image", TEXT, "gemini-2.5-pro"),
                _step("image", IMAGE, "imagen-4-pro"),
                _step("prompt-video", TEXT, "gemini-2.5-pro"),
                _step("video", VIDEO, "veo_3_1"),
            ],
            refund_policy=catalog_pb2.REFUND_POLICY_PROPORTIONAL,
            enabled=True,
            public=True,
        ),
        "ecom-video-pro": catalog_pb2.WorkflowTemplate(
            code="ecom-video-pro",
            name=_text("文案生成视频", "Copy to video"),
            price=common_pb2.Credits(milli=12000),
            inputs=_inputs("productText", "ratio"),
            steps=[_step("image", IMAGE, "imagen-4-pro"), _step("video", VIDEO, "veo-3.1-fast")],
            enabled=True,
            public=True,
        ),
    }


@dataclass
class Fakes:
    catalog: FakeCatalog
    ledger: FakeLedger
    generation: FakeGeneration
    server: GrpcServer
    port: int

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    def env(self) -> dict[str, Any]:
        return {"catalog_addr": self.addr, "ledger_addr": self.addr, "generation_addr": self.addr}


def inputs_for(fakes: Fakes, who_id: str, template: str) -> dict[str, object]:
    """Valid inputs for a seeded template: `ecom-video-pro`'s, else the other templates' (with a photo
    uploaded by `who_id`)."""
    if template == "ecom-video-pro":
        return {"productText": "A stainless steel water bottle that keeps drinks cold.", "ratio": "9:16"}
    return {
        "productText": "Vitamin D3 gummies for the whole family.",
        "productPhotos": [fakes.generation.add_upload(who_id)],
        "ratio": "16:9",
        "tone": "friendly",
    }


async def start_fakes(bus: Bus) -> Fakes:
    """One gRPC server hosting the three fakes (each service on its own stub path)."""
    server = GrpcServer("fakes", host="127.0.0.1", port=0)
    # The generated bases answer UNIMPLEMENTED for RPCs a fake leaves out; their stubs call those abstract.
    catalog = FakeCatalog(version=7, templates=seed_templates())  # type: ignore[abstract]
    ledger, generation = FakeLedger(), FakeGeneration(bus)  # type: ignore[abstract]
    catalog_pb2_grpc.add_CatalogServiceServicer_to_server(catalog, server.server)
    ledger_pb2_grpc.add_LedgerServiceServicer_to_server(ledger, server.server)
    generation_pb2_grpc.add_GenerationServiceServicer_to_server(generation, server.server)
    port = await server.start()
    return Fakes(catalog, ledger, generation, server, port)
