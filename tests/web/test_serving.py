"""How the gateway serves the console: the HTML shell on the console's own paths only, assets from the
static folder only, strict security headers, and no API route shadowed."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from gateway.web import PAGES, STATIC
from tests.gateway_app import gateway_app, serving
from tests.infra import Infra


@pytest.fixture
async def http(infra: Infra) -> AsyncIterator[httpx.AsyncClient]:
    async with serving(gateway_app(infra)) as client:
        yield client


@pytest.mark.parametrize(
    "path", ["/", "/pricing", "/billing", "/verify-email/tok_123", "/reset-password/tok_9", "/admin/models"]
)
async def test_console_paths_answer_the_html_shell_with_strict_headers(
    http: httpx.AsyncClient, path: str
) -> None:
    reply = await http.get(path)
    assert reply.status_code == 200
    assert reply.headers["content-type"] == "text/html; charset=utf-8"
    assert '<script type="module" src="/assets/js/main.js"></script>' in reply.text
    csp = reply.headers["content-security-policy"]
    assert "script-src 'self'" in csp
    assert "'unsafe-inline'" not in csp
    assert "'unsafe-eval'" not in csp
    assert "frame-ancestors 'none'" in csp
    assert reply.headers["referrer-policy"] == "no-referrer"
    assert reply.headers["x-content-type-options"] == "nosniff"


async def test_the_shell_holds_no_inline_script_and_no_secret(http: httpx.AsyncClient) -> None:
    html = (await http.get("/")).text
    assert "<script>" not in html
    assert "onclick" not in html
    for secret_like in ("token", "secret", "password", "api_key", "Bearer"):
        assert secret_like not in html


async def test_api_routes_are_not_shadowed_and_ops_routes_are_not_public(http: httpx.AsyncClient) -> None:
    for ops in ("/healthz", "/readyz", "/metrics"):  # served on the operations port only (gateway/ops.py)
        assert (await http.get(ops)).status_code == 404
    assert (await http.get("/openapi.json")).json()["info"]["title"] == "Atelier API"
    assert "swagger" in (await http.get("/docs")).text.lower()
    missing = await http.get("/v1/not-a-route")
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("application/problem+json")
    unknown_page = await http.get("/not-a-console-page")
    assert unknown_page.status_code == 404
    assert unknown_page.headers["content-type"].startswith("application/problem+json")
    schema_paths = (await http.get("/openapi.json")).json()["paths"]
    assert not any(path.startswith(("/assets", "/pricing")) for path in schema_paths)


@pytest.mark.parametrize(
    ("path", "media_type"),
    [
        ("/assets/js/main.js", "text/javascript; charset=utf-8"),
        ("/assets/app.css", "text/css; charset=utf-8"),
        ("/assets/i18n/strings.json", "application/json"),
        ("/assets/vendor/qrcode-generator-2.0.4.mjs", "text/javascript; charset=utf-8"),
    ],
)
async def test_assets_are_served_with_their_types(
    http: httpx.AsyncClient, path: str, media_type: str
) -> None:
    reply = await http.get(path)
    assert reply.status_code == 200
    assert reply.headers["content-type"] == media_type
    assert reply.headers["x-content-type-options"] == "nosniff"
    assert reply.headers["cache-control"] == "no-cache"
    assert reply.headers["etag"]


@pytest.mark.parametrize(
    "path",
    [
        "/assets/../__init__.py",
        "/assets/%2e%2e/__init__.py",
        "/assets/..%2f__init__.py",
        "/assets/js/../../__init__.py",
        "/assets/",
        "/assets/js",
        "/assets/nope.js",
    ],
)
async def test_nothing_outside_the_static_folder_is_served(http: httpx.AsyncClient, path: str) -> None:
    reply = await http.get(path)
    assert reply.status_code == 404, reply.text[:200]
    assert "import" not in reply.text


async def test_a_nul_in_an_asset_path_is_refused_at_the_edge(http: httpx.AsyncClient) -> None:
    reply = await http.get("/assets/%00")
    assert reply.status_code == 400, reply.text[:200]
    assert reply.json()["code"] == "invalid_text"


def test_every_page_module_the_router_names_exists_and_every_path_is_claimed() -> None:
    main = (STATIC / "js" / "main.js").read_text()
    import re

    modules = set(re.findall(r'page: "([a-z]+)"', main))
    assert modules == {p.stem for p in (STATIC / "js" / "pages").glob("*.js")}
    first_segments = {path.split("/")[1] for path in re.findall(r'path: "(/[^"]*)"', main)}
    assert first_segments == set(PAGES)
