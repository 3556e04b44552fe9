"""Accessibility on every page: each control and link has a name, images have alt text, ids are unique,
and there is one h1 (signed in as an admin, against the in-browser API fake)."""

from __future__ import annotations

import pytest
from playwright.async_api import BrowserContext, Page, expect

from tests.web.fakes import USER, FakeApi, sign_in

ADMIN = {**USER, "email": "root@atelier.local", "role": "admin"}


@pytest.fixture
async def api(context: BrowserContext) -> FakeApi:
    fake = FakeApi()
    await fake.install(context)
    return fake


UNLABELLED = """() => {
  const named = (el) =>
    el.labels?.length || el.getAttribute('aria-label') || el.getAttribute('aria-labelledby');
  const bad = [];
  for (const el of document.querySelectorAll('input:not([type=hidden]), select, textarea')) {
    if (!named(el)) bad.push(el.outerHTML.slice(0, 120));
  }
  for (const el of document.querySelectorAll('button, a[href]')) {
    if (!(el.textContent.trim() || el.getAttribute('aria-label'))) bad.push(el.outerHTML.slice(0, 120));
  }
  for (const el of document.querySelectorAll('img')) {
    if (!el.hasAttribute('alt')) bad.push(el.outerHTML.slice(0, 120));
  }
  const ids = [...document.querySelectorAll('[id]')].map((el) => el.id);
  const dupes = ids.filter((id, i) => ids.indexOf(id) !== i);
  if (dupes.length) bad.push('duplicate ids: ' + dupes.join(','));
  const h1 = document.querySelectorAll('h1').length;
  if (h1 !== 1) bad.push('h1 count ' + h1);
  return bad;
}"""


@pytest.mark.parametrize(
    "path",
    [
        "/pricing",
        "/billing",
        "/image",
        "/video",
        "/copy",
        "/workflow",
        "/tasks",
        "/usage",
        "/account",
        "/guide",
        "/login",
        "/register",
        "/admin/models",
        "/admin/users",
        "/admin/audit",
    ],
)
async def test_every_control_is_labelled_on(
    page: Page, context: BrowserContext, api: FakeApi, path: str
) -> None:
    await sign_in(context, ADMIN)
    await page.goto(path)
    await expect(page.locator("#main")).to_have_attribute("data-ready", "true")
    await expect(page.locator("#main .loading")).to_have_count(0)
    assert await page.evaluate(UNLABELLED) == []
