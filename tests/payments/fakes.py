"""In-test stand-ins reached over the real wire: a ledger and a catalog served by `grpc.aio` (with the
shared error interceptor), and fake provider APIs served over real HTTP by uvicorn."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import ClassVar

import grpc
import uvicorn
from google.protobuf.timestamp_pb2 import Timestamp
from starlette.applications import Starlette

from atelier.accounts.v1 import accounts_pb2, accounts_pb2_grpc
from atelier.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from atelier.common.v1 import common_pb2
from atelier.ledger.v1 import ledger_pb2, ledger_pb2_grpc
from kit.errors import Conflict, FailedPrecondition, NotFound
from kit.grpc_server import GrpcServer
from kit.identity import caller
from tests.tokens import LiveSessions

PROVIDER_OF = {"card": "stripe", "alipay": "alipay", "wechatpay": "wechatpay", "sandbox": "sandbox"}


def _now_pb(delta: timedelta = timedelta()) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(datetime.now(UTC) + delta)
    return stamp


@dataclass
class FakeLedger(ledger_pb2_grpc.LedgerServiceServicer):
    """The recharge-order and callback-log RPCs, with completion-once on the order's state."""

    orders: dict[str, ledger_pb2.RechargeOrder] = field(default_factory=dict)
    callbacks: list[ledger_pb2.RecordCallbackRequest] = field(default_factory=list)
    complete_calls: list[ledger_pb2.CompleteRechargeOrderRequest] = field(default_factory=list)
    credits: list[str] = field(default_factory=list)
    fail_records: int = 0

    def seed(
        self,
        order_id: str,
        provider: str,
        minor: int,
        *,
        age: timedelta = timedelta(),
        user_id: str = "u_1",
        checkout_id: str = "",
    ) -> ledger_pb2.RechargeOrder:
        order = ledger_pb2.RechargeOrder(
            id=order_id,
            user_id=user_id,
            method={v: k for k, v in PROVIDER_OF.items()}[provider],
            provider=provider,
            amount=common_pb2.Money(minor=minor, currency="CNY"),
            paid_credits=common_pb2.Credits(milli=minor * 10),
            bonus_credits=common_pb2.Credits(milli=0),
            status=ledger_pb2.RECHARGE_ORDER_STATUS_PENDING,
            provider_checkout_id=checkout_id,
            created_at=_now_pb(-age),
        )
        self.orders[order_id] = order
        return order

    def outcomes(self, order_id: str) -> list[str]:
        return [
            ledger_pb2.CallbackOutcome.Name(c.outcome).removeprefix("CALLBACK_OUTCOME_")
            for c in self.callbacks
            if c.order_id == order_id
        ]

    async def CreateRechargeOrder(self, request, context):  # type: ignore[no-untyped-def]
        existing = self.orders.get(request.order_id)
        if existing is not None:
            if existing.user_id != request.user_id or existing.amount != request.amount:
                raise Conflict("order id reused with another body", code="idempotency_conflict")
            return ledger_pb2.CreateRechargeOrderResponse(order=existing, replayed=True)
        order = ledger_pb2.RechargeOrder(
            id=request.order_id,
            user_id=request.user_id,
            method=request.method,
            provider=request.provider,
            amount=request.amount,
            plan_code=request.plan_code,
            paid_credits=request.paid_credits,
            bonus_credits=request.bonus_credits,
            catalog_version=request.catalog_version,
            status=ledger_pb2.RECHARGE_ORDER_STATUS_PENDING,
            created_at=_now_pb(),
            expires_at=request.expires_at,
        )
        self.orders[order.id] = order
        return ledger_pb2.CreateRechargeOrderResponse(order=order)

    async def AttachRechargeCheckout(self, request, context):  # type: ignore[no-untyped-def]
        order = self.orders.get(request.order_id)
        if order is None:
            raise NotFound("no such order", code="order_not_found")
        order.provider_checkout_id = request.provider_checkout_id
        order.pay_url = request.pay_url
        return ledger_pb2.AttachRechargeCheckoutResponse(order=order)

    async def GetRechargeOrder(self, request, context):  # type: ignore[no-untyped-def]
        order = self.orders.get(request.order_id)
        if order is None or (request.user_id and order.user_id != request.user_id):
            raise NotFound("no such order", code="order_not_found")
        return ledger_pb2.GetRechargeOrderResponse(order=order)

    async def CompleteRechargeOrder(self, request, context):  # type: ignore[no-untyped-def]
        self.complete_calls.append(request)
        order = self.orders.get(request.order_id)
        if order is None:
            raise NotFound("no such order", code="order_not_found")
        if request.paid != order.amount:
            raise FailedPrecondition("paid amount differs from the order", code="amount_mismatch")
        if order.status == ledger_pb2.RECHARGE_ORDER_STATUS_COMPLETED:
            return ledger_pb2.CompleteRechargeOrderResponse(order=order, already_completed=True)
        # Compare-and-set with no await in between: the one winner credits.
        order.status = ledger_pb2.RECHARGE_ORDER_STATUS_COMPLETED
        order.provider_transaction_id = request.provider_transaction_id
        order.paid_amount.CopyFrom(request.paid)
        order.completed_at.CopyFrom(_now_pb())
        self.credits.append(order.id)
        return ledger_pb2.CompleteRechargeOrderResponse(order=order, already_completed=False)

    async def RecordCallback(self, request, context):  # type: ignore[no-untyped-def]
        if self.fail_records > 0:
            self.fail_records -= 1
            # INTERNAL, not retried by the client channel (UNAVAILABLE would be, transparently).
            raise RuntimeError("database is down")
        self.callbacks.append(request)
        return ledger_pb2.RecordCallbackResponse(
            callback=ledger_pb2.CallbackLog(id=request.callback_id, outcome=request.outcome)
        )

    async def ListPendingRechargeOrders(self, request, context):  # type: ignore[no-untyped-def]
        before = request.created_before.ToDatetime()
        pending = [
            o
            for o in sorted(self.orders.values(), key=lambda o: o.id)
            if o.status == ledger_pb2.RECHARGE_ORDER_STATUS_PENDING
            and o.created_at.ToDatetime() < before
            and (not request.provider or o.provider == request.provider)
        ]
        start = int(request.page.cursor or 0)
        limit = request.page.limit or 100
        page = pending[start : start + limit]
        cursor = str(start + limit) if start + limit < len(pending) else ""
        return ledger_pb2.ListPendingRechargeOrdersResponse(
            orders=page, page=common_pb2.PageInfo(next_cursor=cursor)
        )


class FakeCatalog(catalog_pb2_grpc.CatalogServiceServicer):
    """QuoteRecharge with the product's rules: minimum 30 CNY, 300 → +30, 1000 → +150, two plans."""

    PLANS: ClassVar[dict[str, tuple[int, int, int]]] = {
        "starter": (9900, 100_000, 0),
        "growth": (49900, 500_000, 80_000),
    }

    async def QuoteRecharge(self, request, context):  # type: ignore[no-untyped-def]
        provider = PROVIDER_OF[request.method]
        if request.HasField("amount"):
            minor = request.amount.minor
            if minor < 3000:
                raise FailedPrecondition("the minimum recharge is 30 CNY", code="below_minimum_recharge")
            paid = minor * 10  # 1 CNY = 1 credit = 1000 milli; fen → milli is × 10
            bonus = paid * 15 // 100 if minor >= 100_000 else paid // 10 if minor >= 30_000 else 0
            plan = ""
        else:
            if request.plan_code not in self.PLANS:
                raise NotFound("no such plan", code="plan_not_found")
            minor, paid, bonus = self.PLANS[request.plan_code]
            plan = request.plan_code
        return catalog_pb2.QuoteRechargeResponse(
            quote=catalog_pb2.RechargeQuote(
                method=request.method,
                provider=provider,
                amount=common_pb2.Money(minor=minor, currency="CNY"),
                plan_code=plan,
                paid_credits=common_pb2.Credits(milli=paid),
                bonus_credits=common_pb2.Credits(milli=bonus),
                total_credits=common_pb2.Credits(milli=paid + bonus),
                catalog_version=7,
            )
        )


class FakeAccounts(LiveSessions):
    """Only what the gateway asks: every session is live (`LiveSessions`), and for `require_verified`
    the caller as the accounts service sees them (every user of these tests is still unverified there)."""

    async def GetUser(
        self, request: accounts_pb2.GetUserRequest, context: grpc.aio.ServicerContext
    ) -> accounts_pb2.GetUserResponse:
        identity = caller(context)
        user = accounts_pb2.User(id=identity.user_id, status=accounts_pb2.USER_STATUS_UNVERIFIED)
        return accounts_pb2.GetUserResponse(user=user)


@asynccontextmanager
async def serve_fakes(ledger: FakeLedger, catalog: FakeCatalog | None = None) -> AsyncIterator[str]:
    """Serve the fakes on a free port over real gRPC; yields the address."""
    server = GrpcServer("fakes", host="127.0.0.1", port=0)
    ledger_pb2_grpc.add_LedgerServiceServicer_to_server(ledger, server.server)
    # RPCs a fake leaves out answer UNIMPLEMENTED (the generated base); only its stub calls them abstract.
    catalog_pb2_grpc.add_CatalogServiceServicer_to_server(catalog or FakeCatalog(), server.server)  # type: ignore[abstract]
    accounts_pb2_grpc.add_AccountsServiceServicer_to_server(FakeAccounts(), server.server)  # type: ignore[abstract]
    port = await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(0.2)


@asynccontextmanager
async def serve_http(app: Starlette) -> AsyncIterator[str]:
    """Serve an ASGI app over real HTTP on a free port; yields its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        sock.close()
