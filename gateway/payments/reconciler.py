"""Missed callbacks: ask the provider about orders still pending after a while, complete the paid ones.

Runs as a gateway background task (`ATELIER_PAYMENTS_RECONCILE_INTERVAL_SECONDS`, 0 disables it) or
once from the command line: `python -m gateway.payments.reconciler`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from atelier.common.v1 import common_pb2
from atelier.ledger.v1 import ledger_pb2
from gateway.payments.base import ProviderError
from gateway.payments.processing import Outcome, PaymentProcessor, ledger_stub
from gateway.payments.registry import order_view

log = logging.getLogger(__name__)


@dataclass
class ReconcileReport:
    checked: int = 0
    completed: list[str] = field(default_factory=list)
    still_pending: int = 0
    failures: dict[str, str] = field(default_factory=dict)


class Reconciler:
    def __init__(
        self,
        processor: PaymentProcessor,
        *,
        pending_after: timedelta,
        page_size: int = 100,
        max_orders: int = 1000,
    ) -> None:
        self.processor = processor
        self.pending_after = pending_after
        self.page_size = page_size
        # Per pass; the rest wait for the next one.
        self.max_orders = max_orders

    async def run_once(self, now: datetime | None = None) -> ReconcileReport:
        report = ReconcileReport()
        before = Timestamp()
        before.FromDatetime((now or datetime.now(UTC)) - self.pending_after)
        # List first, then settle: completing orders while paging would shift an offset-based cursor.
        pending: list[ledger_pb2.RechargeOrder] = []
        cursor = ""
        while len(pending) < self.max_orders:
            page = await self.processor.ledger.ListPendingRechargeOrders(
                ledger_pb2.ListPendingRechargeOrdersRequest(
                    page=common_pb2.PageRequest(cursor=cursor, limit=self.page_size), created_before=before
                ),
            )
            pending.extend(page.orders)
            cursor = page.page.next_cursor
            if not cursor:
                break
        for order in pending[: self.max_orders]:
            await self._reconcile(order, report)
        return report

    async def _reconcile(self, order: ledger_pb2.RechargeOrder, report: ReconcileReport) -> None:
        provider = self.processor.payments.providers.get(order.provider)
        if provider is None:
            return
        report.checked += 1
        try:
            result = await provider.query(order_view(order))
        except ProviderError as exc:
            report.failures[order.id] = str(exc)
            log.warning("provider query failed", extra={"order_id": order.id, "provider": order.provider})
            return
        if not result.paid:
            report.still_pending += 1
            return
        settlement = await self.processor.settle_query(order, result)
        if settlement.outcome == Outcome.CALLBACK_OUTCOME_CREDITED:
            report.completed.append(order.id)
            log.info(
                "reconciler completed an order", extra={"order_id": order.id, "provider": order.provider}
            )
        elif settlement.outcome != Outcome.CALLBACK_OUTCOME_DUPLICATE:
            report.failures[order.id] = settlement.reason

    async def run_forever(self, interval_seconds: float, stop: asyncio.Event) -> None:
        while not stop.is_set():
            started = time.monotonic()
            try:
                report = await self.run_once()
                if report.checked:
                    log.info(
                        "reconciled pending orders",
                        extra={"checked": report.checked, "completed": len(report.completed)},
                    )
            except grpc.aio.AioRpcError as exc:
                log.warning("reconciler could not reach the ledger: %s", exc.code().name)
            except Exception:
                log.exception("reconciler pass failed")
            remaining = max(0.0, interval_seconds - (time.monotonic() - started))
            try:
                await asyncio.wait_for(stop.wait(), timeout=remaining)
            except TimeoutError:
                pass


async def _main() -> None:  # pragma: no cover - a thin command around run_once
    from gateway.payments.registry import PaymentGateway
    from gateway.payments.settings import PaymentSettings
    from kit import grpc_client
    from kit.settings import Settings

    settings = PaymentSettings()
    async with grpc_client.to_peer(Settings(), "ledger", workload="gateway") as channel:
        processor = PaymentProcessor(PaymentGateway.from_settings(settings), ledger_stub(channel))
        reconciler = Reconciler(processor, pending_after=timedelta(minutes=settings.reconcile_after_minutes))
        report = await reconciler.run_once()
    log.warning(
        "reconciled: checked=%d completed=%d pending=%d failures=%d",
        report.checked,
        len(report.completed),
        report.still_pending,
        len(report.failures),
    )


if __name__ == "__main__":  # pragma: no cover
    logging.basicConfig(level=logging.INFO)
    asyncio.run(_main())
