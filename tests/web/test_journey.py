"""The product's main journey in a real browser against the whole launched stack (`atelier run`):
register → verify from the mailed link → sandbox recharge → the top-right balance updates live →
image task → result visible → workflow run → the usage chart shows the spend.

Runs in the default suite (marked `journey` and `slow`; deselect with -m "not journey").
Screenshots of each step land in test-artifacts/web/journey-*.png.
"""

from __future__ import annotations

import email
import re
import struct
import time
import uuid
import zlib
from collections.abc import AsyncIterator, Iterator
from email.message import Message
from pathlib import Path

import pytest
from playwright.async_api import Browser, BrowserContext, Page, expect

from tests.e2e.stack import Stack as E2EStack
from tests.infra import Infra
from tests.web.conftest import screenshot

pytestmark = [pytest.mark.journey, pytest.mark.slow]
ADMIN_EMAIL = "journey-admin@atelier.local"
ADMIN_PASSWORD = "journey admin password 1"
PASSWORD = "a long journey password"
STEP_TIMEOUT = 60_000  # generation on the local provider, workflow steps, callbacks


class Stack:
    """`atelier run` as a process (tests/e2e/stack.py), with a known admin."""

    def __init__(self, home: Path, infra: Infra) -> None:
        self.home = home
        self.inner = E2EStack(home, infra)
        self.http_port: int = self.inner.http_port
        self.inner.env.update(ATELIER_ADMIN_EMAIL=ADMIN_EMAIL, ATELIER_ADMIN_PASSWORD=ADMIN_PASSWORD)

    def start(self) -> None:
        self.inner.start(180)

    def stop(self) -> None:
        self.inner.stop()


@pytest.fixture(scope="module")
def stack(infra: Infra, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = Stack(tmp_path_factory.mktemp("journey") / "home", infra)
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()


@pytest.fixture
async def journey_context(browser: Browser, stack: Stack) -> AsyncIterator[BrowserContext]:
    context = await browser.new_context(
        base_url=f"http://127.0.0.1:{stack.http_port}", locale="en-US", accept_downloads=True
    )
    context.set_default_timeout(20_000)
    yield context
    await context.close()


def png(width: int, height: int) -> bytes:
    """A real RGB PNG (a gradient), made here so the test needs no image library."""
    rows = b"".join(
        b"\x00" + bytes(v for x in range(width) for v in (x * 255 // width, y * 255 // height, 128))
        for y in range(height)
    )

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def mailed_link(home: Path, to: str, timeout: float = 30) -> str:
    """The link in the newest mail to `to` in the development outbox."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for path in sorted((home / "mail").glob("**/*.eml"), key=lambda p: p.stat().st_mtime, reverse=True):
            message: Message = email.message_from_bytes(path.read_bytes())
            if to in (message["To"] or ""):
                body = next(part for part in message.walk() if part.get_content_type() == "text/plain")
                text = body.get_payload(decode=True).decode()  # type: ignore[union-attr]
                match = re.search(r"https?://\S+", text)
                assert match, text
                return match.group(0)
        time.sleep(0.3)
    raise AssertionError(f"no mail to {to} in {home / 'mail'}")


async def balance_of(page: Page) -> str:
    return (await page.locator("#balance").text_content() or "").strip()


async def test_register_verify_recharge_generate_run_and_see_the_usage(
    journey_context: BrowserContext, stack: Stack, tmp_path: Path
) -> None:
    page = await journey_context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    address = f"journey-{uuid.uuid4().hex[:8]}@example.com"

    # Register.
    await page.goto("/register")
    await page.get_by_label("Email").fill(address)
    await page.get_by_label("Password", exact=True).fill(PASSWORD)
    await page.get_by_label("Repeat the password").fill(PASSWORD)
    await page.get_by_role("button", name="Register").last.click()
    await expect(page.get_by_role("heading", name="Check your inbox")).to_be_visible()
    await screenshot(page, "journey-1-registered")

    # Verify from the mailed link.
    link = mailed_link(stack.home, address)
    assert "/verify-email/" in link
    await page.goto(link)
    await expect(page.locator("#main").get_by_role("status")).to_contain_text("is verified")
    await expect(page).to_have_url(re.compile(r"/verify-email$"))  # the token left the address bar

    # Sign in.
    await page.goto("/login")
    await page.get_by_label("Email").fill(address)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").last.click()
    await expect(page).to_have_url(re.compile(r"/image$"))
    await expect(page.locator("#balance")).to_have_text("0")

    # Recharge 30 RMB through the sandbox; the balance top-right follows within a second of the credit.
    await page.get_by_role("navigation", name="Main").get_by_role("link", name="Billing").click()
    await expect(page.locator("#bonus-tiers li")).to_have_count(2)
    await page.get_by_label("Amount (CNY)").fill("30")
    await expect(page.locator("#recharge-preview")).to_contain_text("You get 30 credits")
    await page.get_by_role("button", name="Recharge").click()
    pay = page.get_by_role("button", name="Pay with the sandbox")
    await expect(pay).to_be_visible()
    paid_at = time.monotonic()
    await pay.click()
    await expect(page.locator("#balance")).to_have_text("30", timeout=STEP_TIMEOUT)
    live_seconds = time.monotonic() - paid_at
    await expect(page.locator("#billing-available")).to_have_text("30 credits")
    await expect(page.locator("#recharge-step .badge")).to_have_text("Completed", timeout=3000)
    records = page.get_by_role("region", name="Records")
    await expect(records.locator("tbody tr").filter(has_text="Recharge")).not_to_have_count(0)
    await page.get_by_label("Show").select_option("callback")
    await expect(records.locator("tbody tr")).not_to_have_count(0)
    await screenshot(page, "journey-2-recharged")
    assert live_seconds < 10, live_seconds

    # An image task: the exact price first, then the result.
    await page.get_by_role("navigation", name="Main").get_by_role("link", name="Image Studio").click()
    await expect(page.locator("#quote-price")).to_have_text(re.compile(r"^\d+(\.\d+)? credits$"))
    price = (await page.locator("#quote-price").text_content() or "").split()[0]
    await page.get_by_label("Prompt").fill("A jar of green tea on a marble counter, morning light")
    await page.get_by_role("button", name="Generate").click()
    task = page.locator("article.task").first
    await expect(task).to_have_attribute("data-status", "succeeded", timeout=STEP_TIMEOUT)
    image = task.get_by_role("img").first
    await expect(image).to_be_visible()
    # Loaded, decoded and non-empty (the file arrives after the task card; give it the step's time).
    loaded = "img => img.complete && img.naturalWidth > 0"
    await page.wait_for_function(loaded, arg=await image.element_handle(), timeout=STEP_TIMEOUT)
    await expect(task.get_by_role("link", name="Download").first).to_be_visible()
    await screenshot(page, "journey-3-image")

    # The task is on the Tasks page, finished.
    await page.get_by_role("navigation", name="Main").get_by_role("link", name="Tasks").click()
    await expect(page.locator("#task-list article.task").first).to_have_attribute("data-status", "succeeded")

    # A workflow run with an uploaded product photo.
    photo = tmp_path / "product.png"
    photo.write_bytes(png(64, 64))
    await page.get_by_role("navigation", name="Main").get_by_role("link", name="Workflow").click()
    await page.get_by_label("Template").select_option("health-supplement")
    await expect(page.locator("#template-price")).to_have_text("1 credits")
    await page.locator("form textarea").first.fill("A vitamin C supplement for busy people")
    await page.locator("form input[type=file]").first.set_input_files(str(photo))
    await expect(page.locator("form .thumbs img")).to_have_count(1)
    await page.get_by_role("button", name="Start the run").click()
    run = page.locator("article.run").first
    await expect(run).to_have_attribute("data-status", "succeeded", timeout=STEP_TIMEOUT * 3)
    await expect(run.locator("li[data-step]")).not_to_have_count(0)
    await expect(run.locator("li[data-step] .badge").first).to_have_text("Succeeded")
    await expect(run.locator("video, img").first).to_be_visible()
    await screenshot(page, "journey-4-workflow")

    # The balance is 30 − image price − template price, and the usage chart shows the spend.
    expected = 30 * 1000 - round(float(price) * 1000) - 1000
    await expect(page.locator("#balance")).to_have_text(_credits(expected), timeout=STEP_TIMEOUT)
    await page.get_by_role("navigation", name="Main").get_by_role("link", name="Usage").click()
    spent = _credits(30 * 1000 - expected)
    await expect(page.locator("#usage-total")).to_have_text(f"Spent: {spent} credits")
    await expect(page.locator("#chart-model rect.bar")).not_to_have_count(0)
    await expect(page.locator("#chart-day rect.bar[height]").last).to_have_attribute("data-value", spent)
    await screenshot(page, "journey-5-usage")

    # The same page in Chinese.
    await page.get_by_role("button", name="中文").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("用量")
    await screenshot(page, "journey-6-usage-zh")
    assert errors == []


async def test_an_admin_sees_every_model_and_the_audit_log(journey_context: BrowserContext) -> None:
    page = await journey_context.new_page()
    await page.goto("/login")
    await page.get_by_label("Email").fill(ADMIN_EMAIL)
    await page.get_by_label("Password").fill(ADMIN_PASSWORD)
    await page.get_by_role("button", name="Sign in").last.click()
    await page.get_by_role("navigation", name="Main").get_by_role("link", name="Admin").click()
    await expect(page.locator("#admin-body tbody tr")).not_to_have_count(0)
    await expect(page.locator("#admin-body")).to_contain_text("gpt-image-1.5-all")
    await page.get_by_role("link", name="Audit log").click()
    await expect(page.locator("#admin-body")).to_be_visible()
    await screenshot(page, "journey-7-admin")


def _credits(milli: int) -> str:
    """Milli-credits as the API writes them ("28.5", "30")."""
    whole, frac = divmod(milli, 1000)
    return f"{whole}.{frac:03d}".rstrip("0").rstrip(".") if frac else str(whole)
