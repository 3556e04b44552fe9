"""The signed-in pages against an in-browser fake of the API routes on the other branches (fakes.py):
pricing, the studios with exact quotes, the live balance, billing and usage charts."""

from __future__ import annotations

import re

import pytest
from playwright.async_api import BrowserContext, Page, expect

from tests.web.conftest import screenshot
from tests.web.fakes import FakeApi, sign_in


@pytest.fixture
async def api(context: BrowserContext) -> FakeApi:
    fake = FakeApi()
    await fake.install(context)
    return fake


@pytest.fixture
async def signed_in(context: BrowserContext, api: FakeApi) -> FakeApi:
    await sign_in(context)
    return api


async def test_pricing_tells_that_an_admin_must_enable_models_when_none_are(page: Page, api: FakeApi) -> None:
    api.models = {"image": [], "video": [], "text": []}
    await page.goto("/pricing")
    await expect(page.locator("#main").get_by_role("status")).to_have_text(
        "No models are available yet: an admin must enable models first."
    )
    await screenshot(page, "pricing-empty")
    await page.get_by_role("button", name="中文").click()
    await expect(page.locator("#main").get_by_role("status")).to_have_text(
        "暂无可用模型：需要管理员先启用模型。"
    )


async def test_pricing_lists_models_by_kind_with_billing_specs_and_capabilities(
    page: Page, api: FakeApi
) -> None:
    await page.goto("/pricing")
    image = page.get_by_role("region", name="Image")
    card = image.locator('[data-model="gpt-image-1.5-all"]')
    await expect(card.get_by_role("heading")).to_have_text("GPT Image 1.5 All")
    await expect(card).to_contain_text("Per generation 0.5 credits")
    await expect(card).to_contain_text("1:1, 4:5, 16:9, 9:16, 3:4, 4:3")
    await expect(card.locator(".tags li")).to_have_text(["image edit", "reference image"])
    video = page.get_by_role("region", name="Video")
    await expect(video.locator('[data-model="grok-video-3"]')).to_contain_text("5 s, 10 s")
    await screenshot(page, "pricing")


async def test_image_studio_shows_only_supported_specs_quotes_and_shows_the_result(
    page: Page, signed_in: FakeApi
) -> None:
    api = signed_in
    await page.goto("/image")
    model = page.get_by_label("Model")
    await expect(model).to_have_value("gpt-image-1.5-all")
    ratio = page.get_by_label("Ratio")
    await expect(ratio.locator("option")).to_have_text(["1:1", "4:5", "16:9", "9:16", "3:4", "4:3"])
    price = page.locator("#quote-price")
    await expect(price).to_have_text("0.5 credits")
    await page.get_by_label("Number of images").fill("3")
    await page.get_by_label("Number of images").dispatch_event("change")
    await expect(price).to_have_text("1.5 credits")
    assert api.sent("POST", "/v1/quotes")[-1]["n"] == 3

    # Another model: its own specs only.
    await model.select_option("google-flow-imagen")
    await expect(page.get_by_label("Resolution").locator("option")).to_have_text(["1024"])
    await expect(page.get_by_label("Number of images")).to_have_count(0)
    await expect(page.get_by_label("Capability").locator("option")).to_have_text(
        ["None (text to image/video)", "product image"]
    )
    await expect(price).to_have_text("0.5 credits")

    # Submitting without a prompt is stopped in the page.
    await page.get_by_role("button", name="Generate").click()
    await expect(page.locator("#main").get_by_role("alert")).to_have_text("Write a prompt first.")
    assert api.sent("POST", "/v1/tasks") == []

    await page.get_by_label("Prompt").fill("A bottle of tea on a wooden table")
    await page.get_by_label("Ratio").select_option("16:9")
    await page.get_by_role("button", name="Generate").click()
    await expect(page.locator("#main").get_by_role("status").filter(has_text="Submitted")).to_contain_text(
        "0.5 credits"
    )
    [submitted] = api.sent("POST", "/v1/tasks")
    assert submitted == {
        "kind": "image",
        "model": "google-flow-imagen",
        "prompt": "A bottle of tea on a wooden table",
        "ratio": "16:9",
        "resolution": "1024",
        "duration_seconds": 0,
        "n": 1,
        "capability": "",
        "inputs": [],
    }
    keys = [
        headers.get("idempotency-key") for m, p, _, headers in api.requests if (m, p) == ("POST", "/v1/tasks")
    ]
    assert keys[0]

    card = page.locator('[data-task="t_1"]')
    await expect(card).to_have_attribute("data-status", "queued")
    api.finish("t_1", "/v1/files/o_1.png")
    await expect(card).to_have_attribute("data-status", "succeeded", timeout=8000)
    image = card.get_by_role("img")
    await expect(image).to_have_attribute("src", "/v1/files/o_1.png")
    assert await image.evaluate("img => img.complete && img.naturalWidth") == 1
    await expect(card.get_by_role("link", name="Download")).to_have_attribute("download", "")
    await screenshot(page, "image-studio")


async def test_video_studio_offers_the_models_durations(page: Page, signed_in: FakeApi) -> None:
    await page.goto("/video")
    await expect(page.get_by_label("Duration").locator("option")).to_have_text(["5 s", "10 s"])
    await expect(page.get_by_label("Resolution").locator("option")).to_have_text(["720p", "1080p"])
    await page.get_by_label("Duration").select_option("10")
    await expect(page.locator("#quote-price")).to_have_text("0.5 credits")
    assert signed_in.sent("POST", "/v1/quotes")[-1]["duration_seconds"] == 10


async def test_studio_without_enabled_models_says_so(page: Page, signed_in: FakeApi) -> None:
    signed_in.models["video"] = []
    await page.goto("/video")
    await expect(page.locator("#main").get_by_role("status")).to_contain_text(
        "an admin must enable models first"
    )


async def test_the_top_right_balance_follows_live_events(page: Page, signed_in: FakeApi) -> None:
    balance = page.locator("#balance")
    await page.goto("/billing")
    await expect(balance).to_have_text("100")
    await expect(page.locator("#billing-available")).to_have_text("100 credits")
    signed_in.events.append(("balance", {"user_id": "u_1", "available": "430", "held": "0", "version": "5"}))
    await expect(balance).to_have_text("430", timeout=5000)
    await expect(page.locator("#billing-available")).to_have_text("430 credits")
    # An older version arriving late never overwrites a newer balance.
    signed_in.events.append(("balance", {"user_id": "u_1", "available": "100", "held": "0", "version": "4"}))
    await page.wait_for_timeout(2500)
    await expect(balance).to_have_text("430")
    await expect(balance).to_have_attribute("aria-live", "polite")
    events = [h for m, p, _, h in signed_in.requests if p == "/v1/events"]
    assert events
    assert all(h["authorization"] == "Bearer fake-access-token" for h in events)


async def test_billing_enforces_the_minimum_and_shows_tiers_plans_and_methods(
    page: Page, signed_in: FakeApi
) -> None:
    await page.goto("/billing")
    await expect(page.locator("#bonus-tiers li")).to_have_text(
        ["¥300.00 delivers 330 credits", "¥1000.00 delivers 1150 credits"]
    )
    await expect(page.locator("#plans li")).to_have_text(
        ["Starter plan: $29.00 → 29 credits", "Growth plan: $99.00 → 99 credits"]
    )
    await expect(page.get_by_role("radio")).to_have_count(3)
    amount = page.get_by_label("Amount (CNY)")
    await amount.fill("29.99")
    await expect(page.locator("#recharge-preview")).to_have_text("The minimum recharge is 30.00 RMB.")
    await page.get_by_role("button", name="Recharge").click()
    await expect(page.locator("#main").get_by_role("alert")).to_have_text(
        "The minimum recharge is 30.00 RMB."
    )
    assert signed_in.sent("POST", "/v1/billing/recharges") == []
    await amount.fill("300")
    await expect(page.locator("#recharge-preview")).to_have_text("You get 330 credits (300 paid + 30 bonus).")


async def test_wechat_pay_shows_a_qr_code_and_the_sandbox_pays(page: Page, signed_in: FakeApi) -> None:
    signed_in.recharge_step = {"type": "qr_code", "code_url": "weixin://wxpay/bizpayurl?pr=abc123"}
    await page.goto("/billing")
    await page.get_by_label("微信支付").check()
    await page.get_by_label("Amount (CNY)").fill("30")
    await page.get_by_role("button", name="Recharge").click()
    qr = page.get_by_role("img", name="WeChat Pay QR code")
    await expect(qr).to_be_visible()
    assert int(await qr.get_attribute("data-modules") or 0) >= 21
    [sent] = signed_in.sent("POST", "/v1/billing/recharges")
    assert sent == {"method": "wechatpay", "amount": "30", "currency": "CNY"}
    await page.get_by_role("button", name="Pay with the sandbox").click()
    await expect(page.locator("#main").get_by_role("status").filter(has_text="Payment sent")).to_be_visible()
    assert [p for m, p, _, _ in signed_in.requests if m == "POST" and p.startswith("/sandbox/pay/")] == [
        "/sandbox/pay/ro_1"
    ]
    await screenshot(page, "billing-wechat-qr")


async def test_records_can_be_filtered_by_type(page: Page, signed_in: FakeApi) -> None:
    signed_in.records = [
        {
            "id": "tr_1",
            "type": "recharge",
            "occurred_at": "2026-03-14T08:00:00Z",
            "delta": "330",
            "transfer": {},
        },
        {
            "id": "tr_2",
            "type": "consumption",
            "occurred_at": "2026-03-14T09:00:00Z",
            "delta": "-0.5",
            "transfer": {"metadata": {"model": "gpt-image-1.5-all"}},
        },
        {
            "id": "cb_1",
            "type": "callback",
            "occurred_at": "2026-03-14T08:00:00Z",
            "delta": "0",
            "callback": {"provider": "sandbox", "outcome": "credited", "reason": ""},
        },
    ]
    await page.goto("/billing")
    rows = page.get_by_role("region", name="Records").locator("tbody tr")
    await expect(rows).to_have_count(3)
    await page.get_by_label("Show").select_option("consumption")
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_contain_text("gpt-image-1.5-all")
    assert signed_in.requests[-1][1] == "/v1/billing/records"


async def test_usage_draws_spend_per_day_and_per_model(page: Page, signed_in: FakeApi) -> None:
    from datetime import UTC, datetime

    today = datetime.now(UTC).strftime("%Y-%m-%d")
    signed_in.usage = {
        "day": {"buckets": [{"key": today, "spend": "1.5", "count": 3}], "total": "1.5"},
        "model": {
            "buckets": [
                {"key": "gpt-image-1.5-all", "spend": "1", "count": 2},
                {"key": "grok-video-3", "spend": "0.5", "count": 1},
            ],
            "total": "1.5",
        },
        "kind": {
            "buckets": [
                {"key": "image", "spend": "1", "count": 2},
                {"key": "video", "spend": "0.5", "count": 1},
            ],
            "total": "1.5",
        },
    }
    await page.goto("/usage")
    await expect(page.locator("#usage-total")).to_have_text("Spent: 1.5 credits")
    day_bars = page.locator("#chart-day rect.bar")
    await expect(day_bars).to_have_count(30)
    spent = page.locator(f'#chart-day rect.bar[data-key="{today}"]')
    assert float(await spent.get_attribute("height") or 0) > 100
    model_bars = page.locator("#chart-model rect.bar")
    await expect(model_bars).to_have_count(2)
    heights = [float(await bar.get_attribute("height") or 0) for bar in await model_bars.all()]
    assert heights[0] == pytest.approx(2 * heights[1])
    await expect(page.get_by_role("img", name="Spend per model")).to_be_visible()
    await screenshot(page, "usage")


async def test_admin_pages_are_for_admins_only(page: Page, signed_in: FakeApi) -> None:
    await page.goto("/admin")
    await expect(page.locator("#main").get_by_role("alert")).to_have_text("This page needs the admin role.")
    await expect(page.get_by_role("navigation", name="Main").get_by_role("link", name="Admin")).to_have_count(
        0
    )
    await expect(page).to_have_url(re.compile(r"/admin$"))
