"""Responses that arrive over time, read by the console as they come: the live balance over a held-open
`GET /v1/events` stream (fetch-based SSE with the bearer token), and Copy Studio's streamed answer."""

from __future__ import annotations

import asyncio
import time

import pytest
from playwright.async_api import BrowserContext, Page, expect

from tests.web.conftest import Console, screenshot
from tests.web.fakes import FakeApi, sign_in


@pytest.fixture
async def api(context: BrowserContext, console: Console) -> FakeApi:
    fake = FakeApi(
        stream_events_to=f"{console.base_url}/__test__/events",
        stream_copy_to=f"{console.base_url}/__test__/copy-message",
    )
    fake.models["text"] = [
        {
            "code": "gemini-2.5-pro",
            "kind": "text",
            "name": "Gemini 2.5 Pro",
            "billing": {"unit": "per_1k_tokens", "input_price_per_1k_tokens": "0.01"},
            "capabilities": [],
        }
    ]
    await fake.install(context)
    await sign_in(context)
    return fake


async def wait_for_stream(console: Console, count: int = 1) -> None:
    for _ in range(200):
        if len(console.live.event_requests) >= count:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the console never opened /v1/events")


async def test_the_balance_changes_within_a_second_of_a_pushed_event(
    page: Page, api: FakeApi, console: Console
) -> None:
    await page.goto("/usage")
    balance = page.locator("#balance")
    await expect(balance).to_have_text("100")
    await wait_for_stream(console)
    assert console.live.event_requests[0]["authorization"] == "Bearer fake-access-token"
    assert "access_token" not in str(console.live.event_requests[0])  # never in the URL

    for version, amount in ((2, "130"), (3, "129.5"), (4, "99.5")):
        started = time.monotonic()
        event = {"available": amount, "held": "0", "version": str(version)}
        await console.live.events.put(("balance", event))
        await expect(balance).to_have_text(amount, timeout=1000)
        assert time.monotonic() - started < 1.0
    # The stream stayed open: one request served every update.
    assert len(console.live.event_requests) == 1
    await expect(balance).to_have_attribute("data-version", "4")


async def test_a_task_event_refreshes_the_task_at_once(page: Page, api: FakeApi, console: Console) -> None:
    task = api.new_task({"kind": "image", "model": "gpt-image-1.5-all", "prompt": "tea"})
    api.tasks["t_9"] = {**task, "id": "t_9"}
    await page.goto("/tasks")
    card = page.locator('[data-task="t_9"]')
    await expect(card).to_have_attribute("data-status", "queued")
    await wait_for_stream(console)
    api.finish("t_9", "/v1/files/o_9.png")
    await console.live.events.put(("task", {"task_id": "t_9", "status": "TASK_STATUS_SUCCEEDED"}))
    await expect(card).to_have_attribute("data-status", "succeeded", timeout=1500)
    await expect(card.get_by_role("img")).to_be_visible()


async def test_copy_studio_shows_the_answer_while_it_streams(
    page: Page, api: FakeApi, console: Console
) -> None:
    console.live.deltas = ["Fresh ", "tea, ", "fresh ", "start."]
    console.live.final = {
        "id": "m_2",
        "role": "MESSAGE_ROLE_ASSISTANT",
        "content": "Fresh tea, fresh start.",
        "status": "MESSAGE_STATUS_COMPLETED",
        "charge": "0.02",
    }
    await page.goto("/copy")
    await expect(page.get_by_label("Model")).to_have_value("gemini-2.5-pro")
    await page.get_by_label("Your message (Ctrl+Enter sends)").fill("A slogan for green tea")
    await page.get_by_label("Your message (Ctrl+Enter sends)").press("Control+Enter")
    log = page.get_by_role("log", name="Conversation")
    answer = log.locator('[data-role="assistant"]')
    # Every delta is on screen while the final message is still held back by the server.
    await expect(answer.locator(".text")).to_have_text("Fresh tea, fresh start.")
    await expect(answer).to_have_attribute("aria-busy", "true")
    await expect(log.locator('[data-role="user"]')).to_have_text("A slogan for green tea")
    console.live.release_final.set()
    await expect(answer).not_to_have_attribute("aria-busy", "true")
    await expect(answer.locator(".meta")).to_have_text("0.02 credits")
    [created] = api.sent("POST", "/v1/copy/conversations")
    assert created == {"model": "gemini-2.5-pro"}
    await screenshot(page, "copy-studio")
