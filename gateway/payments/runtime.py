"""The payments part of the gateway process: registry, processor, recharges and the reconciler loop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx

from gateway.payments.processing import PaymentProcessor, ledger_stub
from gateway.payments.recharges import Recharges, catalog_stub
from gateway.payments.reconciler import Reconciler
from gateway.payments.registry import PaymentGateway
from gateway.payments.settings import PaymentSettings


@dataclass
class PaymentsRuntime:
    settings: PaymentSettings
    gateway: PaymentGateway
    processor: PaymentProcessor
    recharges: Recharges
    reconciler: Reconciler
    http: httpx.AsyncClient
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None

    @classmethod
    def start(
        cls,
        settings: PaymentSettings,
        channels: Mapping[str, Any],
        *,
        http: httpx.AsyncClient | None = None,
        gateway: PaymentGateway | None = None,
    ) -> PaymentsRuntime:
        http = http or httpx.AsyncClient(timeout=15.0)
        gateway = gateway or PaymentGateway.from_settings(settings, http)
        ledger = ledger_stub(channels["ledger"])
        processor = PaymentProcessor(gateway, ledger)
        runtime = cls(
            settings=settings,
            gateway=gateway,
            processor=processor,
            recharges=Recharges(
                gateway,
                ledger,
                catalog_stub(channels["catalog"]),
                timedelta(minutes=settings.order_ttl_minutes),
            ),
            reconciler=Reconciler(
                processor, pending_after=timedelta(minutes=settings.reconcile_after_minutes)
            ),
            http=http,
        )
        if settings.reconcile_interval_seconds > 0:
            runtime.task = asyncio.create_task(
                runtime.reconciler.run_forever(settings.reconcile_interval_seconds, runtime.stop),
                name="payments-reconciler",
            )
        return runtime

    async def close(self) -> None:
        self.stop.set()
        if self.task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(self.task, timeout=5)
        await self.http.aclose()
