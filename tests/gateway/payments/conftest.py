from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from fastapi import FastAPI

from gateway.payments.sandbox import SandboxProvider
from gateway.payments.settings import PaymentSettings
from tests.fakes.ledger import FakeLedger
from tests.gateway.payments.fakes import serve_fakes
from tests.gateway.payments.signers import Keys
from tests.gateway_app import gateway_app, serving
from tests.infra import Infra

ALIPAY_FORM = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}


@pytest.fixture(scope="session")
def keys() -> Keys:
    return Keys()


@pytest.fixture(scope="session")
def payment_settings(keys: Keys) -> PaymentSettings:
    return keys.settings()


@contextlib.asynccontextmanager
async def gateway_over(
    infra: Infra, payments: PaymentSettings, ledger: FakeLedger
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """The gateway app in front of `ledger` (and `serve_fakes`' catalog and accounts) over real gRPC,
    and a client calling it from a public address."""
    async with serve_fakes(ledger) as address:
        app = gateway_app(infra, payments, ledger_addr=address, catalog_addr=address, accounts_addr=address)
        async with serving(app, peer=("203.0.113.7", 4711), base_url="http://gateway.test") as http:
            yield app, http


@dataclass
class Stack:
    http: httpx.AsyncClient
    ledger: FakeLedger


@pytest.fixture
async def stack(keys: Keys, infra: Infra) -> AsyncIterator[Stack]:
    # RPCs a fake leaves out answer UNIMPLEMENTED (the generated base); only its stub calls them abstract.
    ledger = FakeLedger()  # type: ignore[abstract]
    async with gateway_over(infra, keys.settings(reconcile_interval_seconds=0), ledger) as (app, http):
        # The sandbox payer reaches the gateway through the same in-process transport.
        sandbox = app.state.payments.gateway.providers["sandbox"]
        assert isinstance(sandbox, SandboxProvider)
        sandbox.http = http
        yield Stack(http, ledger)
