"""The gateway app as tests build and run it, in one place: settings with this run's NATS and every
service the test does not name unreachable, and the app served in-process (its lifespan entered) to an
httpx client over the ASGI transport."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
from fastapi import FastAPI

from devkit.embedded import free_port
from gateway.app import create_app
from gateway.payments.settings import PaymentSettings
from gateway.settings import GatewaySettings
from tests.infra import Infra

SERVICES = ("accounts", "catalog", "ledger", "generation", "workflow")
# The TCP peer the app sees unless a test names another (httpx's own default).
PEER = ("127.0.0.1", 123)


def gateway_settings(infra: Infra, **overrides: Any) -> GatewaySettings:
    """This run's NATS and namespace; `<service>_addr` of every service not in `overrides` is an address
    where nothing listens, so a test reaches only the services it names."""
    dead = f"127.0.0.1:{free_port()}"
    values: dict[str, Any] = {f"{service}_addr": dead for service in SERVICES}
    values.update(nats_url=infra.nats_url, namespace=infra.namespace)
    values.update(overrides)
    return GatewaySettings(**values)


def gateway_app(infra: Infra, payments: PaymentSettings | None = None, **overrides: Any) -> FastAPI:
    """`create_app` over `gateway_settings(infra, **overrides)`."""
    return create_app(gateway_settings(infra, **overrides), payments)


@contextlib.asynccontextmanager
async def serving(
    app: FastAPI, *, peer: tuple[str, int] = PEER, base_url: str = "http://gateway", **client: Any
) -> AsyncIterator[httpx.AsyncClient]:
    """`app` running, and a client reaching it in-process as `peer`; `client` goes to `httpx.AsyncClient`."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=peer)
        async with httpx.AsyncClient(transport=transport, base_url=base_url, **client) as http:
            yield http


def openapi_operations() -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(path template, method, operation) of every route the gateway documents, methods sorted."""
    for template, operations in create_app(GatewaySettings()).openapi()["paths"].items():
        for method in sorted(operations):
            yield template, method, operations[method]
