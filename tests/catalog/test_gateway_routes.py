"""The gateway's public catalog routes against a real catalog service (httpx over the ASGI app)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from atelier.catalog.v1 import catalog_pb2 as pb
from gateway.routes.catalog import language
from tests.catalog.stack import ADMIN, CatalogStack
from tests.gateway_app import gateway_app, serving
from tests.infra import Infra


@pytest.fixture
async def client(catalog: CatalogStack, infra: Infra) -> AsyncIterator[httpx.AsyncClient]:
    async with serving(gateway_app(infra, catalog_addr=f"127.0.0.1:{catalog.port}")) as http:
        yield http


async def test_models_by_kind_localized_with_credits_as_strings(client: httpx.AsyncClient) -> None:
    reply = await client.get(
        "/v1/models", params={"kind": "video"}, headers={"Accept-Language": "zh-CN,zh;q=0.9"}
    )
    assert reply.status_code == 200
    body = reply.json()
    assert body["admin_must_enable_models"] is False
    assert [m["code"] for m in body["models"]] == ["google-flow-video", "grok-video-3"]
    flow = body["models"][0]
    assert flow["billing"] == {"unit": "per_generation", "price": "0.5"}
    assert flow["durations"] == [5, 8]
    assert [c["name"] for c in flow["capabilities"]] == ["首帧", "图生视频", "参考图"]
    assert "channel" not in flow

    english = (
        await client.get("/v1/models", params={"kind": "video"}, headers={"Accept-Language": "en"})
    ).json()
    assert [c["name"] for c in english["models"][0]["capabilities"]] == [
        "first frame",
        "image to video",
        "reference image",
    ]
    text = (await client.get("/v1/models", params={"kind": "text"})).json()
    assert text["models"][0]["billing"] == {
        "unit": "per_1k_tokens",
        "input_price_per_1k_tokens": "0.002",
        "output_price_per_1k_tokens": "0.008",
    }
    bad = await client.get("/v1/models", params={"kind": "audio"})
    assert bad.status_code == 422
    assert bad.headers["content-type"].startswith("application/problem+json")


async def test_pricing_and_templates(client: httpx.AsyncClient) -> None:
    pricing = (await client.get("/v1/pricing", headers={"Accept-Language": "zh"})).json()
    assert [(g["kind"], len(g["models"])) for g in pricing["groups"]] == [
        ("text", 1),
        ("image", 5),
        ("video", 2),
    ]
    assert [t["name"] for t in pricing["templates"]] == ["保健品宣传视频", "达人视频制作", "文案生成视频"]

    templates = (await client.get("/v1/workflow-templates", headers={"Accept-Language": "en"})).json()[
        "templates"
    ]
    health = templates[0]
    assert (health["code"], health["price"], health["name"]) == (
        "health-supplement",
        "1",
        "保健品宣传视频",  # as the product document names it on its English page
    )
    assert health["required_inputs"] == ["productText", "productPhotos", "ratio", "tone"]
    assert [(s["key"], s["model"]) for s in health["steps"]] == [
        ("prompt-image", "gemini-2.5-pro"),
        ("image", "google-flow-image"),
        ("prompt-video", "gemini-2.5-pro"),
        ("video", "google-flow-video"),
    ]
    ratio = next(i for i in health["inputs"] if i["name"] == "ratio")
    assert (ratio["type"], ratio["allowed_values"]) == ("choice", ["16:9", "9:16"])


async def test_recharge_options_and_quotes(client: httpx.AsyncClient) -> None:
    options = (await client.get("/v1/recharge-options", headers={"Accept-Language": "zh"})).json()
    assert options["rules"]["minimum"] == {"amount": "30.00", "currency": "CNY"}
    assert options["rules"]["bonus_tiers"] == [
        {"amount": {"amount": "300.00", "currency": "CNY"}, "credits": "330"},
        {"amount": {"amount": "1000.00", "currency": "CNY"}, "credits": "1150"},
    ]
    assert [m["name"] for m in options["payment_methods"]] == ["Visa / MasterCard", "支付宝", "微信支付"]
    assert [(p["name"], p["price"]["amount"], p["credits"]) for p in options["plans"]] == [
        ("入门版", "29.00", "29"),
        ("成长版", "99.00", "99"),
    ]

    recharge = await client.post("/v1/recharge-quotes", json={"method": "wechatpay", "amount": "500"})
    assert recharge.json()["total_credits"] == "530"
    below = await client.post("/v1/recharge-quotes", json={"method": "wechatpay", "amount": "29.99"})
    assert (below.status_code, below.json()["code"]) == (409, "below_minimum_recharge")
    for typed in ("５００", "٥٠٠", "50０"):  # not 500: ASCII digits only
        odd = await client.post("/v1/recharge-quotes", json={"method": "wechatpay", "amount": typed})
        assert (odd.status_code, odd.json()["code"]) == (422, "invalid_amount"), typed

    quote = await client.post(
        "/v1/quotes", json={"model": "grok-video-3", "ratio": "9:16", "duration_seconds": 10}
    )
    assert quote.status_code == 200
    assert (quote.json()["total"], quote.json()["unit"], quote.json()["catalog_version"]) == (
        "0.5",
        "per_generation",
        1,
    )

    text = await client.post(
        "/v1/quotes", json={"model": "gemini-2.5-flash", "input_tokens": 1500, "max_output_tokens": 1000}
    )
    assert text.json()["total"] == "0.011"

    unsupported = await client.post("/v1/quotes", json={"model": "grok-video-3", "ratio": "1:1"})
    assert unsupported.status_code == 400
    problem = unsupported.json()
    assert (problem["code"], problem["allowed"], problem["field"]) == (
        "unsupported_spec",
        "16:9,9:16",
        "ratio",
    )
    internal = await client.post("/v1/quotes", json={"model": "veo_3_1"})
    assert (internal.status_code, internal.json()["code"]) == (404, "model_not_found")
    invalid = await client.post("/v1/quotes", json={"model": "grok-video-3", "n": -1})
    assert invalid.status_code == 422


async def test_an_empty_list_tells_that_an_admin_must_enable_models(
    client: httpx.AsyncClient, catalog: CatalogStack
) -> None:
    for code in ("google-flow-video", "grok-video-3"):
        await catalog.stub.SetModelEnabled(
            pb.SetModelEnabledRequest(code=code, enabled=False), metadata=ADMIN
        )
    body = (await client.get("/v1/models", params={"kind": "video"})).json()
    assert body == {"catalog_version": 3, "admin_must_enable_models": True, "models": []}
    disabled = await client.post("/v1/quotes", json={"model": "grok-video-3"})
    assert (disabled.status_code, disabled.json()["code"]) == (409, "model_disabled")


@pytest.mark.parametrize(
    ("header", "lang"),
    [
        (None, "en"),
        ("zh", "zh"),
        ("zh-CN,zh;q=0.9,en;q=0.8", "zh"),
        ("en-US,zh;q=0.5", "en"),
        ("fr", "en"),
        ("fr,zh;q=0.2", "zh"),
        ("zh;q=0", "en"),
    ],
)
def test_accept_language(header: str | None, lang: str) -> None:
    assert language(header) == lang
