"""The console in a real browser: the gateway app served by uvicorn on a free port, Debian's Chromium
driven by Playwright (async API, on the test session's event loop so the server keeps serving).

API routes that are not on this branch yet are answered by `page.route` fakes with the shapes the
other branches define (see `fakes.py`); the docs pages come from the real gateway reading a fake
catalog service over real gRPC.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse
from playwright.async_api import Browser, BrowserContext, Page, async_playwright

from atelier.catalog.v1 import catalog_pb2_grpc
from devkit.embedded import free_port
from kit.grpc_server import GrpcServer
from tests.docs.catalog_fixture import seed_snapshot
from tests.fakes.catalog import FakeCatalog
from tests.gateway_app import gateway_app
from tests.infra import Infra

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_PATH = Path(CHROMIUM)
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "web"


@dataclass
class Console:
    base_url: str
    catalog: FakeCatalog
    live: LiveStreams


@dataclass
class LiveStreams:
    """Test-only streaming endpoints on the served app (under /__test__/), for what `page.route` cannot
    fake: a response that arrives over time. Tests push events; the browser reads them as they come."""

    events: asyncio.Queue[tuple[str, dict[str, Any]]] = field(default_factory=asyncio.Queue)
    event_requests: list[dict[str, str]] = field(default_factory=list)
    deltas: list[str] = field(default_factory=list)
    final: dict[str, Any] = field(default_factory=dict)
    release_final: asyncio.Event = field(default_factory=asyncio.Event)

    def reset(self) -> None:
        self.events = asyncio.Queue()
        self.event_requests.clear()
        self.release_final = asyncio.Event()

    def install(self, app: FastAPI) -> None:
        async def events(request: Request) -> StreamingResponse:
            self.event_requests.append(dict(request.headers))
            queue = self.events

            async def stream() -> AsyncIterator[str]:
                yield ": connected\n\n"
                while True:
                    name, data = await queue.get()
                    yield f"event: {name}\ndata: {json.dumps(data)}\n\n"

            return StreamingResponse(stream(), media_type="text/event-stream")

        async def message(request: Request) -> StreamingResponse:
            async def stream() -> AsyncIterator[str]:
                yield f"event: user_message\ndata: {json.dumps({'role': 'user'})}\n\n"
                for delta in self.deltas:
                    yield f"event: delta\ndata: {json.dumps({'text': delta})}\n\n"
                    await asyncio.sleep(0.05)
                await self.release_final.wait()
                yield f"event: final\ndata: {json.dumps(self.final)}\n\n"

            return StreamingResponse(stream(), media_type="text/event-stream")

        app.add_api_route("/__test__/events", events, methods=["GET"])
        app.add_api_route("/__test__/copy-message", message, methods=["POST"])


async def _serve(app: object, port: int) -> tuple[uvicorn.Server, asyncio.Task[None]]:
    config = uvicorn.Config(
        app,  # type: ignore[arg-type]
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="on",
        timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    for _ in range(200):
        if server.started:
            return server, task
        if task.done():
            task.result()
        await asyncio.sleep(0.05)
    raise AssertionError("the gateway did not start")


@pytest.fixture(scope="module")
async def console(infra: Infra) -> AsyncIterator[Console]:
    # RPCs a fake leaves out answer UNIMPLEMENTED (the generated base); only its stub calls them abstract.
    catalog = FakeCatalog(snapshot=seed_snapshot())  # type: ignore[abstract]
    grpc_server = GrpcServer("catalog-fake", host="127.0.0.1", port=0)
    catalog_pb2_grpc.add_CatalogServiceServicer_to_server(catalog, grpc_server.server)
    grpc_port = await grpc_server.start()
    port = free_port()
    app = gateway_app(infra, catalog_addr=f"127.0.0.1:{grpc_port}")
    live = LiveStreams()
    live.install(app)
    server, task = await _serve(app, port)
    yield Console(f"http://127.0.0.1:{port}", catalog, live)
    server.should_exit = True
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(task, 10)
    await grpc_server.stop(0)


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    if not CHROMIUM_PATH.exists():  # noqa: ASYNC240 (a stat, once per session)
        pytest.fail(f"{CHROMIUM} is missing: `make browser` installs Debian's chromium")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        await browser.close()


@pytest.fixture
async def context(browser: Browser, console: Console) -> AsyncIterator[BrowserContext]:
    console.live.reset()
    context = await browser.new_context(base_url=console.base_url, locale="en-US")
    context.set_default_timeout(10_000)
    yield context
    await context.close()


@pytest.fixture
async def page(context: BrowserContext) -> AsyncIterator[Page]:
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    assert errors == [], f"uncaught errors in the page: {errors}"


async def screenshot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
