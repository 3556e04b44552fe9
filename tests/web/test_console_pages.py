"""Workflow, Admin, session refresh and accessibility checks over every page, against the in-browser
fake of the API (fakes.py)."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from typing import Any

import pytest
from playwright.async_api import BrowserContext, Page, expect

from tests.web.conftest import screenshot
from tests.web.fakes import PNG_1X1, USER, FakeApi, model, sign_in

ADMIN = {**USER, "email": "root@atelier.local", "role": "admin"}


async def eventually(probe: Callable[[], list[Any]], seconds: float = 5.0) -> list[Any]:
    """The probe's first non-empty answer (requests the page sends a moment after a click)."""
    for _ in range(int(seconds / 0.05)):
        found = probe()
        if found:
            return found
        await asyncio.sleep(0.05)
    raise AssertionError("nothing arrived")


@pytest.fixture
async def api(context: BrowserContext) -> FakeApi:
    fake = FakeApi()
    await fake.install(context)
    return fake


async def test_workflow_shows_template_inputs_and_price_and_follows_a_run(
    page: Page, context: BrowserContext, api: FakeApi
) -> None:
    await sign_in(context)
    await page.goto("/workflow")
    await expect(page.locator("#template-price")).to_have_text("1 credits")
    await expect(page.locator("#main")).to_contain_text("Image prompt (gemini-2.5-pro) → Product image")
    await expect(page.locator("#main")).to_contain_text("A failed run is refunded in full.")
    await expect(page.get_by_label("Tone").locator("option")).to_have_text(["warm", "energetic"])

    await page.get_by_role("button", name="Start the run").click()
    await expect(page.locator("#main").get_by_role("alert")).to_have_text("Fill in Product text.")
    await page.get_by_label("Product text").fill("Vitamin C for busy people")
    await page.get_by_role("button", name="Start the run").click()
    await expect(page.locator("#main").get_by_role("alert")).to_have_text("Fill in Product photos.")
    assert api.sent("POST", "/v1/workflow-runs") == []

    await page.get_by_label("Product photos").set_input_files(
        {"name": "bottle.png", "mimeType": "image/png", "buffer": PNG_1X1}
    )
    await expect(page.locator("form .thumbs img")).to_have_count(1)
    await page.get_by_label("Ratio").select_option("16:9")
    await page.get_by_role("button", name="Start the run").click()
    await expect(page.locator("#main").get_by_role("status").filter(has_text="Run started")).to_contain_text(
        "1 credits"
    )
    [started] = api.sent("POST", "/v1/workflow-runs")
    assert started == {
        "template_code": "health-supplement",
        "inputs": {
            "productText": "Vitamin C for busy people",
            "productPhotos": ["up_1"],
            "ratio": "16:9",
            "tone": "warm",
        },
    }
    run = page.locator('[data-run="r_1"]')
    await expect(run).to_have_attribute("data-status", "running")
    await expect(run.locator("li[data-step]")).to_have_count(4)

    stored = api.runs["r_1"]
    stored["status"] = "RUN_STATUS_SUCCEEDED"
    for step in stored["steps"]:
        step["status"] = "STEP_STATUS_SUCCEEDED"
    stored["steps"][0]["outputs"] = [
        {"id": "o_t", "mime_type": "text/plain", "text": "A bright bottle", "url": ""}
    ]
    stored["steps"][3]["outputs"] = [{"id": "o_v", "mime_type": "video/mp4", "url": "/v1/files/o_v.mp4"}]
    await expect(run).to_have_attribute("data-status", "succeeded", timeout=6000)
    await expect(run.locator('li[data-step="prompt-image"]')).to_contain_text("A bright bottle")
    video = run.locator('li[data-step="video"] video')
    await expect(video).to_have_attribute("controls", "")
    await expect(run.locator('li[data-step="video"]').get_by_role("link", name="Download")).to_be_visible()
    await screenshot(page, "workflow")


async def test_admin_enables_models_edits_prices_and_adjusts_credits(
    page: Page, context: BrowserContext, api: FakeApi
) -> None:
    await sign_in(context, ADMIN)
    api.admin_models = [
        {**model("grok-video-3", "video", "Grok Video 3", durations=[5, 10]), "enabled": False},
        {**model("gpt-image-1.5-all", "image", "GPT Image 1.5 All"), "enabled": True},
    ]
    await page.goto("/pricing")
    await page.get_by_role("navigation", name="Main").get_by_role("link", name="Admin").click()
    await expect(page).to_have_url(re.compile(r"/admin$"))
    await page.get_by_role("checkbox", name="Enable grok-video-3").check()
    assert await eventually(lambda: api.sent("PATCH", "/v1/admin/models/grok-video-3")) == [{"enabled": True}]

    await (
        page.get_by_role("row", name=re.compile("gpt-image-1.5-all"))
        .get_by_role("button", name="Edit")
        .click()
    )
    form = page.get_by_role("form", name="Edit gpt-image-1.5-all")
    await form.get_by_label("Price (credits)").fill("abc")
    await form.get_by_role("button", name="Save").click()
    await expect(page.locator("#main").get_by_role("alert")).to_have_text("Enter a decimal number, e.g. 0.5.")
    await form.get_by_label("Price (credits)").fill("0.8")
    await form.get_by_label("Ratios").fill("1:1, 16:9")
    await form.get_by_role("button", name="Save").click()
    [saved] = await eventually(lambda: api.sent("PUT", "/v1/admin/models/gpt-image-1.5-all"))
    assert saved["billing"]["price"] == "0.8"
    assert saved["ratios"] == ["1:1", "16:9"]

    await page.get_by_role("link", name="Users").click()
    await page.get_by_role("row", name=re.compile("ada@example.com")).get_by_role("button").click()
    await page.get_by_label("Credits (negative to deduct)").fill("-2.5")
    await page.get_by_label("Reason").fill("duplicate charge")
    await page.locator("#admin-body form").get_by_role("button", name="Adjust credits").click()
    await expect(page.locator("#main").get_by_role("status")).to_have_text(
        "Adjusted ada@example.com by -2.5 credits."
    )
    [(body, headers)] = [
        (b, h) for m, p, b, h in api.requests if p == "/v1/admin/users/u_1/credit-adjustments"
    ]
    assert body == {"amount": "-2.5", "reason": "duplicate charge"}
    assert headers["idempotency-key"]

    await page.get_by_role("link", name="Audit log").click()
    await expect(page.locator("#admin-body tbody tr")).to_have_count(1)
    await expect(page.locator("#admin-body")).to_contain_text("model.enabled")
    await screenshot(page, "admin-audit")


async def test_an_expired_access_token_is_refreshed_once_and_the_call_retried(
    page: Page, context: BrowserContext, api: FakeApi
) -> None:
    await sign_in(context)
    api.expired_tokens = {"fake-access-token"}
    await page.goto("/billing")
    await expect(page.locator("#billing-available")).to_have_text("100 credits")
    await expect(page.locator("#balance")).to_have_text("100")
    assert api.sent("POST", "/v1/auth/refresh") == [{"refresh_token": "fake-refresh-token"}]
    retried = [h["authorization"] for m, p, _, h in api.requests if p == "/v1/billing/balance"]
    assert retried[-1] == "Bearer fresh-fake-refresh-token"
    stored = json.loads(await page.evaluate("localStorage.getItem('atelier.session')"))
    assert stored["refresh_token"] == "rotated-refresh-token"


async def test_signing_out_forgets_the_session(page: Page, context: BrowserContext, api: FakeApi) -> None:
    await sign_in(context)
    await page.goto("/usage")
    await expect(page.locator("#balance")).to_have_text("100")
    other = await context.new_page()
    await other.goto("/pricing")
    await other.get_by_role("button", name="Sign out").click()
    await expect(other).to_have_url(re.compile(r"/login$"))
    # The first tab hears it (storage event): signed out, no balance, back to sign-in on the next page.
    await expect(page.get_by_role("banner").get_by_role("link", name="Sign in")).to_be_visible()
    await expect(page.locator("#balance")).to_have_count(0)
    await page.get_by_role("navigation", name="Main").get_by_role("link", name="Billing").click()
    await expect(page).to_have_url(re.compile(r"/login\?next=%2Fbilling$"))
    assert await page.evaluate("localStorage.getItem('atelier.session')") is None
    assert api.sent("POST", "/v1/auth/logout") == [{"refresh_token": "fake-refresh-token"}]
    await other.close()


@pytest.mark.parametrize(
    ("next_path", "landing"),
    [("/billing", "/billing"), ("//evil.example/x", "/image"), ("/\\evil.example", "/image"), ("", "/image")],
)
async def test_sign_in_goes_back_only_to_a_page_of_this_site(
    page: Page, api: FakeApi, next_path: str, landing: str
) -> None:
    await page.goto(f"/login?next={next_path}" if next_path else "/login")
    await page.get_by_label("Email").fill("ada@example.com")
    await page.get_by_label("Password").fill("wrong password")
    await page.get_by_role("button", name="Sign in").last.click()
    await expect(page.locator("#main").get_by_role("alert")).to_have_text("Wrong email or password.")
    await page.get_by_label("Password").fill("right password")
    await page.get_by_role("button", name="Sign in").last.click()
    await expect(page).to_have_url(re.compile(re.escape(landing) + "$"))
    await expect(page.locator("#balance")).to_have_text("100")
    await expect(page.get_by_role("heading", level=1)).to_be_focused()


@pytest.mark.parametrize(
    ("path", "failing"),
    [("/copy", "/v1/copy/conversations"), ("/image", "/v1/models"), ("/pricing", "/v1/pricing")],
)
async def test_a_page_whose_data_cannot_load_says_so(
    page: Page, context: BrowserContext, api: FakeApi, path: str, failing: str
) -> None:
    await sign_in(context)
    problem = {"status": 503, "code": "upstream_unavailable", "detail": "the service is down"}
    await context.route(
        re.compile(f".*{re.escape(failing)}(\\?.*)?$"),
        lambda route: route.fulfill(
            status=503, content_type="application/problem+json", body=json.dumps(problem)
        ),
    )
    await page.goto(path)
    alert = page.locator("#main p.notice.error[role=alert]")
    await expect(alert).to_have_count(1)
    await expect(page.locator("#main .loading")).to_have_count(0)
