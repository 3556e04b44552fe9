"""The /v1/docs routes through the real gateway app, reading a fake catalog service over real gRPC."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
import pytest

from atelier.catalog.v1 import catalog_pb2_grpc
from kit.grpc_server import GrpcServer
from tests.docs.catalog_fixture import model, seed_snapshot
from tests.docs.seed_document import seed_pages, seed_text
from tests.fakes.catalog import FakeCatalog
from tests.gateway_app import gateway_app, serving
from tests.infra import Infra


@dataclass
class Stack:
    http: httpx.AsyncClient
    catalog: FakeCatalog
    server: GrpcServer = field(repr=False)


@pytest.fixture
async def stack(infra: Infra) -> AsyncIterator[Stack]:
    # RPCs a fake leaves out answer UNIMPLEMENTED (the generated base); only its stub calls them abstract.
    catalog = FakeCatalog(snapshot=seed_snapshot())  # type: ignore[abstract]
    server = GrpcServer("catalog-fake", host="127.0.0.1", port=0)
    catalog_pb2_grpc.add_CatalogServiceServicer_to_server(catalog, server.server)
    port = await server.start()
    async with serving(gateway_app(infra, catalog_addr=f"127.0.0.1:{port}")) as http:
        yield Stack(http, catalog, server)
    await server.stop(0)


async def test_the_index_lists_the_five_pages_in_the_asked_language(stack: Stack) -> None:
    reply = await stack.http.get("/v1/docs", params={"lang": "en"})
    assert reply.status_code == 200
    body = reply.json()
    assert body["lang"] == "en"
    assert [(p["page"], p["title"]) for p in body["pages"]] == [
        ("pricing", "Billing & Credits Guide"),
        ("video-models", "Video Generation Models"),
        ("image-models", "Image Generation Models"),
        ("getting-started", "Getting Started"),
        ("workflow-guide", "Workflow Guide"),
    ]
    zh = (await stack.http.get("/v1/docs", headers={"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.8"})).json()
    assert zh["lang"] == "zh"
    assert zh["pages"][0]["title"] == "计费与积分指南"
    assert zh["pages"][0]["url"] == "/v1/docs/pricing?lang=zh"


async def test_json_pages_carry_the_documents_sections(stack: Stack) -> None:
    seed = {page.section_label: page for page in seed_pages()}["VIDEO MODELS"]
    reply = await stack.http.get("/v1/docs/video-models", params={"lang": "en"})
    assert reply.status_code == 200
    assert reply.headers["content-language"] == "en"
    body = reply.json()
    assert (body["section_label"], body["title"], body["subtitle"], body["date"]) == (
        seed.section_label,
        seed.title,
        seed.subtitle,
        seed.date,
    )
    assert [(s["heading"], s["lines"]) for s in body["sections"]] == seed.sections
    assert body["catalog_version"] == seed_snapshot().version

    zh = (await stack.http.get("/v1/docs/video-models", params={"lang": "zh"})).json()
    assert zh["lang"] == "zh"
    assert [len(s["lines"]) for s in zh["sections"]] == [len(s["lines"]) for s in body["sections"]]
    assert zh["sections"][0]["heading"] == "当前启用的视频模型"


async def test_text_and_markdown_by_query_or_accept(stack: Stack) -> None:
    pages = ["pricing", "video-models", "image-models", "getting-started", "workflow-guide"]
    texts = []
    for page in pages:
        reply = await stack.http.get(f"/v1/docs/{page}", headers={"Accept": "text/plain"})
        assert reply.status_code == 200
        assert reply.headers["content-type"].startswith("text/plain")
        texts.append(reply.text)
    assert "".join(texts) == seed_text()

    by_query = await stack.http.get("/v1/docs/workflow-guide", params={"format": "markdown", "lang": "zh"})
    assert by_query.headers["content-type"].startswith("text/markdown")
    assert by_query.text.startswith("**工作流指南**\n\n# 工作流指南\n")
    by_accept = await stack.http.get(
        "/v1/docs/workflow-guide",
        headers={"Accept": "text/html;q=0.9, text/markdown", "Accept-Language": "zh"},
    )
    assert by_accept.text == by_query.text
    # The query wins over the Accept header.
    as_json = await stack.http.get(
        "/v1/docs/pricing", params={"format": "json"}, headers={"Accept": "text/plain"}
    )
    assert as_json.json()["title"] == "Billing & Credits Guide"


async def test_catalog_changes_show_on_the_next_request(stack: Stack) -> None:
    first = (await stack.http.get("/v1/docs/video-models")).json()
    assert first["subtitle"].startswith("2 public video models ")

    # Unchanged catalog: the gateway asks with the version it holds and the catalog sends nothing new.
    await stack.http.get("/v1/docs/video-models")
    assert stack.catalog.known_versions[-1] == seed_snapshot().version

    stack.catalog.change(lambda s: setattr(model(s, "grok-video-3"), "enabled", False))
    after = (await stack.http.get("/v1/docs/video-models")).json()
    assert after["subtitle"] == "1 public video model with its supported specs, billing, and capabilities."
    assert [s["heading"] for s in after["sections"]] == ["Currently Enabled Video Models", "Flow"]
    assert after["catalog_version"] == seed_snapshot().version + 1

    stack.catalog.change(lambda s: setattr(model(s, "google-flow-video").price, "milli", 800))
    text = (await stack.http.get("/v1/docs/video-models", params={"format": "text"})).text
    assert "- Billing: Per generation 0.8 credits\n" in text
    zh = (await stack.http.get("/v1/docs/video-models", params={"lang": "zh"})).json()
    assert "计费：按次 0.8 积分" in zh["sections"][1]["lines"]


@pytest.mark.parametrize(
    ("path", "params", "status", "code"),
    [
        ("/v1/docs/no-such-page", {}, 404, "unknown_page"),
        ("/v1/docs/pricing", {"lang": "fr"}, 400, "unsupported_language"),
        ("/v1/docs", {"lang": "de"}, 400, "unsupported_language"),
        ("/v1/docs/pricing", {"format": "pdf"}, 400, "unsupported_format"),
    ],
)
async def test_bad_requests_get_clear_problems(
    stack: Stack, path: str, params: dict[str, str], status: int, code: str
) -> None:
    reply = await stack.http.get(path, params=params)
    assert reply.status_code == status
    assert reply.headers["content-type"] == "application/problem+json"
    assert reply.json()["code"] == code


async def test_an_unsupported_accept_language_falls_back_to_english(stack: Stack) -> None:
    reply = await stack.http.get("/v1/docs/getting-started", headers={"Accept-Language": "fr-FR, de;q=0.5"})
    assert reply.status_code == 200
    assert reply.json()["title"] == "Getting Started"


async def test_catalog_down_is_a_503_problem(stack: Stack) -> None:
    await stack.server.stop(0)
    reply = await stack.http.get("/v1/docs/pricing")
    assert reply.status_code == 503
    assert reply.json()["code"] == "upstream_error"
