"""Recharge orders from the payer's side: quote → ledger order → provider checkout → attach.

Retries are safe end to end: the order id is derived from the user and the client's Idempotency-Key,
the ledger answers a replay with the first order, and the provider checkout is created with an
idempotency key (Stripe) or keyed by our order id (Alipay, WeChat Pay out_trade_no). A key reused for
another recharge (method, amount or plan) is refused with 409 `idempotency_conflict`, as tasks are.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from atelier.catalog.v1 import catalog_pb2
from atelier.catalog.v1.catalog_pb2_grpc import CatalogServiceStub
from atelier.common.v1 import common_pb2
from atelier.ledger.v1 import ledger_pb2
from gateway.payments.base import ProviderError
from gateway.payments.registry import PaymentGateway, order_view
from kit.errors import Conflict, InvalidArgument, NotFound, Unavailable
from kit.grpc_client import domain_error
from kit.money import Money

if TYPE_CHECKING:
    from atelier.catalog.v1.catalog_pb2_grpc import CatalogServiceAsyncStub
    from atelier.ledger.v1.ledger_pb2_grpc import LedgerServiceAsyncStub
    from gateway.auth import Principal


def catalog_stub(channel: Any) -> CatalogServiceAsyncStub:
    return cast("CatalogServiceAsyncStub", CatalogServiceStub(channel))


def order_id_for(user_id: str, idempotency_key: str) -> str:
    """The same user and key always name the same order; different users never collide."""
    digest = hashlib.sha256(f"{user_id}\x00{idempotency_key}".encode()).hexdigest()
    return f"ro_{digest[:28]}"


@dataclass(frozen=True, slots=True)
class RechargeRequest:
    method: str
    amount: Money | None = None
    plan_code: str = ""

    def __post_init__(self) -> None:
        if (self.amount is None) == (not self.plan_code):
            raise InvalidArgument("give either an amount or a plan", code="invalid_recharge")

    def made(self, order: ledger_pb2.RechargeOrder) -> bool:
        """Whether `order` is what this request asks for (the same method, and amount or plan)."""
        if order.method != self.method:
            return False
        if self.amount is not None:
            asked = (self.amount.minor, self.amount.currency)
            return not order.plan_code and (order.amount.minor, order.amount.currency) == asked
        return order.plan_code == self.plan_code


class Recharges:
    def __init__(
        self,
        payments: PaymentGateway,
        ledger: LedgerServiceAsyncStub,
        catalog: CatalogServiceAsyncStub,
        order_ttl: timedelta,
    ) -> None:
        self.payments = payments
        self.ledger = ledger
        self.catalog = catalog
        self.order_ttl = order_ttl

    async def create(
        self, identity: Principal, idempotency_key: str, request: RechargeRequest
    ) -> ledger_pb2.RechargeOrder:
        order_id = order_id_for(identity.user_id, idempotency_key)
        metadata = identity.metadata()
        try:
            try:
                order: ledger_pb2.RechargeOrder = (
                    await self.ledger.GetRechargeOrder(
                        ledger_pb2.GetRechargeOrderRequest(order_id=order_id, user_id=identity.user_id),
                        metadata=metadata,
                    )
                ).order
            except grpc.aio.AioRpcError as exc:
                if not isinstance(domain_error(exc), NotFound):
                    raise
                order = await self._create_order(identity, order_id, request)
            if not request.made(order):
                raise Conflict(
                    "this Idempotency-Key was used for another recharge; use a new key",
                    code="idempotency_conflict",
                )
            if order.pay_url or order.status != ledger_pb2.RECHARGE_ORDER_STATUS_PENDING:
                return order
            provider = self.payments.get(order.provider)
            try:
                checkout = await provider.create_checkout(order_view(order))
            except ProviderError as exc:
                raise Unavailable(
                    f"the {order.provider} checkout could not be created; "
                    "retry with the same Idempotency-Key",
                    code="payment_provider_unavailable",
                ) from exc
            attached: ledger_pb2.AttachRechargeCheckoutResponse = await self.ledger.AttachRechargeCheckout(
                ledger_pb2.AttachRechargeCheckoutRequest(
                    order_id=order.id,
                    provider_checkout_id=checkout.provider_checkout_id,
                    pay_url=checkout.pay_url,
                ),
            )
            return attached.order
        except grpc.aio.AioRpcError as exc:
            raise domain_error(exc) from exc

    async def _create_order(
        self, identity: Principal, order_id: str, request: RechargeRequest
    ) -> ledger_pb2.RechargeOrder:
        quote_request = catalog_pb2.QuoteRechargeRequest(method=request.method)
        if request.amount is not None:
            quote_request.amount.CopyFrom(
                common_pb2.Money(minor=request.amount.minor, currency=request.amount.currency)
            )
        else:
            quote_request.plan_code = request.plan_code
        quote = (await self.catalog.QuoteRecharge(quote_request, metadata=identity.metadata())).quote
        provider = self.payments.route(quote.provider)  # refuses methods whose provider is not enabled
        expires_at = Timestamp()
        expires_at.FromDatetime(datetime.now(UTC) + self.order_ttl)
        try:
            created: ledger_pb2.CreateRechargeOrderResponse = await self.ledger.CreateRechargeOrder(
                ledger_pb2.CreateRechargeOrderRequest(
                    order_id=order_id,
                    user_id=identity.user_id,
                    method=quote.method or request.method,
                    provider=provider,
                    amount=quote.amount,
                    plan_code=quote.plan_code,
                    paid_credits=quote.paid_credits,
                    bonus_credits=quote.bonus_credits,
                    catalog_version=quote.catalog_version,
                    expires_at=expires_at,
                ),
                metadata=identity.metadata(),
            )
        except grpc.aio.AioRpcError as exc:
            if not isinstance(domain_error(exc), Conflict):
                raise
            # A concurrent request with the same key created the order first: the caller compares it.
            return await self.get(identity, order_id)
        return created.order

    async def get(self, identity: Principal, order_id: str) -> ledger_pb2.RechargeOrder:
        try:
            reply: ledger_pb2.GetRechargeOrderResponse = await self.ledger.GetRechargeOrder(
                ledger_pb2.GetRechargeOrderRequest(order_id=order_id, user_id=identity.user_id),
                metadata=identity.metadata(),
            )
        except grpc.aio.AioRpcError as exc:
            raise domain_error(exc) from exc
        return reply.order

    async def get_any(self, order_id: str) -> ledger_pb2.RechargeOrder:
        """Any user's order (the sandbox payer page, which plays the payer of the link it was given)."""
        try:
            reply: ledger_pb2.GetRechargeOrderResponse = await self.ledger.GetRechargeOrder(
                ledger_pb2.GetRechargeOrderRequest(order_id=order_id)
            )
        except grpc.aio.AioRpcError as exc:
            raise domain_error(exc) from exc
        return reply.order
