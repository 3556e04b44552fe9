"""Payment callbacks, the sandbox payer, and recharge orders.

Callbacks answer exactly as each provider expects (Alipay `success`, WeChat Pay 204 or
`{"code":"FAIL",...}`, Stripe 2xx/4xx); they are never problem+json, whatever happens.
"""

from __future__ import annotations

import html
import logging
import re
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Header, Path, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse
from google.protobuf.timestamp_pb2 import Timestamp
from pydantic import BaseModel, Field

from atelier.ledger.v1 import ledger_pb2
from gateway.auth import Principal, VerifiedPrincipal
from gateway.payments.base import Ack
from gateway.payments.recharges import RechargeRequest
from gateway.payments.registry import order_view
from gateway.payments.runtime import PaymentsRuntime
from gateway.problems import Problem
from kit.errors import NotFound
from kit.money import Credits, Money, MoneyParseError, amount_pattern

log = logging.getLogger(__name__)

callbacks = APIRouter(tags=["payment callbacks"], include_in_schema=True)
billing = APIRouter(prefix="/v1/billing", tags=["billing"])
sandbox = APIRouter(prefix="/sandbox", tags=["sandbox payer"], include_in_schema=False)

_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")
MAX_CALLBACK_BYTES = 64 * 1024
_ORDER_ID = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")


def _runtime(request: Request) -> PaymentsRuntime:
    runtime: PaymentsRuntime = request.app.state.payments
    return runtime


# --- identity -------------------------------------------------------------------------------------


async def billing_identity(principal: VerifiedPrincipal) -> Principal:
    """The verified caller (recharging moves money: unverified accounts are refused)."""
    return principal


# --- callbacks ------------------------------------------------------------------------------------


async def _callback(request: Request, provider: str) -> Response:
    runtime = _runtime(request)
    if provider not in runtime.gateway.providers:
        return JSONResponse({"error": f"{provider} is not enabled"}, status_code=404)
    # Real notifications are a few kilobytes; refuse floods before verifying anything.
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_CALLBACK_BYTES:
            return JSONResponse({"error": "payload too large"}, status_code=413)
    remote = request.client.host if request.client else ""
    try:
        answer = await runtime.processor.handle_callback(provider, body, dict(request.headers), remote)
    except Exception:
        # Never a traceback, always the provider's own failure shape so that it retries.
        log.exception("payment callback failed", extra={"provider": provider})
        answer = runtime.gateway.get(provider).answer(Ack.RETRY, "internal error")
    return Response(content=answer.body, status_code=answer.status_code, media_type=answer.media_type)


_CALLBACK_SUMMARIES = {
    "stripe": "Stripe webhook (Checkout Session events)",
    "alipay": "Alipay asynchronous notification (answered `success`)",
    "wechatpay": "WeChat Pay v3 payment notification",
    "sandbox": "Sandbox payer callback (HMAC-signed)",
}


def _add_callback_route(provider: str, summary: str) -> None:
    """POST /callbacks/<provider>, named `<provider>_callback` (its operation id)."""

    async def callback(request: Request) -> Response:
        return await _callback(request, provider)

    name = f"{provider}_callback"
    callbacks.add_api_route(f"/callbacks/{provider}", callback, methods=["POST"], summary=summary, name=name)


for _provider, _summary in _CALLBACK_SUMMARIES.items():
    _add_callback_route(_provider, _summary)


# --- recharges ------------------------------------------------------------------------------------


class RechargeIn(BaseModel):
    method: Literal["card", "alipay", "wechatpay", "sandbox"]
    # CNY in major units as a decimal string ("300", "29.99"): never a float.
    amount: str | None = Field(default=None, pattern=amount_pattern(digits=9, decimals=2), examples=["300"])
    currency: Literal["CNY"] = "CNY"
    plan: str | None = Field(default=None, pattern=r"^[a-z0-9_\-]{1,64}$", examples=["starter"])


class MoneyOut(BaseModel):
    amount: str
    currency: str


class NextStepOut(BaseModel):
    type: Literal["redirect", "qr_code", "none"]
    url: str | None = None
    code_url: str | None = None


class RechargeOut(BaseModel):
    id: str
    status: Literal["pending", "completed", "failed", "expired", "unknown"]
    method: str
    provider: str
    amount: MoneyOut
    plan: str | None
    paid_credits: str
    bonus_credits: str
    total_credits: str
    next_step: NextStepOut
    provider_transaction_id: str | None
    failure_reason: str | None
    created_at: str | None
    expires_at: str | None
    completed_at: str | None


_STATUS: dict[int, Literal["pending", "completed", "failed", "expired"]] = {
    ledger_pb2.RECHARGE_ORDER_STATUS_PENDING: "pending",
    ledger_pb2.RECHARGE_ORDER_STATUS_COMPLETED: "completed",
    ledger_pb2.RECHARGE_ORDER_STATUS_FAILED: "failed",
    ledger_pb2.RECHARGE_ORDER_STATUS_EXPIRED: "expired",
}


def _time(stamp: Timestamp, present: bool) -> str | None:
    return stamp.ToDatetime().isoformat() + "Z" if present else None


def recharge_out(order: ledger_pb2.RechargeOrder) -> RechargeOut:
    status = _STATUS.get(order.status, "unknown")
    if status != "pending" or not order.pay_url:
        step = NextStepOut(type="none")
    elif order.provider == "wechatpay":
        step = NextStepOut(type="qr_code", code_url=order.pay_url)
    else:
        step = NextStepOut(type="redirect", url=order.pay_url)
    paid = Credits(order.paid_credits.milli)
    bonus = Credits(order.bonus_credits.milli)
    return RechargeOut(
        id=order.id,
        status=status,
        method=order.method,
        provider=order.provider,
        amount=MoneyOut(
            amount=Money(order.amount.minor, order.amount.currency).major_str(),
            currency=order.amount.currency,
        ),
        plan=order.plan_code or None,
        paid_credits=str(paid),
        bonus_credits=str(bonus),
        total_credits=str(paid + bonus),
        next_step=step,
        provider_transaction_id=order.provider_transaction_id or None,
        failure_reason=order.failure_reason or None,
        created_at=_time(order.created_at, order.HasField("created_at")),
        expires_at=_time(order.expires_at, order.HasField("expires_at")),
        completed_at=_time(order.completed_at, order.HasField("completed_at")),
    )


@billing.post(
    "/recharges",
    status_code=201,
    summary="Start a recharge: an amount (CNY, minimum 30) or a plan, paid by card, Alipay or WeChat Pay",
)
async def create_recharge(
    body: RechargeIn,
    request: Request,
    identity: Annotated[Principal, Depends(billing_identity)],
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> RechargeOut:
    if not idempotency_key or not _KEY.match(idempotency_key):
        raise Problem(
            400, "idempotency_key_required", "send an Idempotency-Key header (1-255 visible characters)"
        )
    if (body.amount is None) == (body.plan is None):
        raise Problem(400, "invalid_recharge", "give either an amount or a plan")
    try:
        amount = Money.parse(body.amount, body.currency) if body.amount is not None else None
    except MoneyParseError as exc:
        raise Problem(400, "invalid_amount", str(exc)) from exc
    recharge = RechargeRequest(method=body.method, amount=amount, plan_code=body.plan or "")
    order = await _runtime(request).recharges.create(identity, idempotency_key, recharge)
    return recharge_out(order)


@billing.get("/recharges/{order_id}", summary="A recharge order and its state")
async def get_recharge(
    request: Request,
    identity: Annotated[Principal, Depends(billing_identity)],
    order_id: Annotated[str, Path(pattern=_ORDER_ID.pattern)],
) -> RechargeOut:
    return recharge_out(await _runtime(request).recharges.get(identity, order_id))


# --- sandbox payer --------------------------------------------------------------------------------

_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Sandbox payment</title></head>
<body style="font-family:sans-serif;max-width:32rem;margin:3rem auto">
<h1>Sandbox payment</h1><p>Order <code>{order}</code>: <strong>{amount}</strong> ({status}).</p>
<p>No money moves: this page plays the payer and sends a signed callback to the gateway.</p>
<form method="post"><button type="submit">Pay {amount}</button></form></body></html>"""


async def _sandbox_order(request: Request, order_id: str) -> ledger_pb2.RechargeOrder:
    runtime = _runtime(request)
    if runtime.gateway.sandbox is None or not _ORDER_ID.match(order_id):
        raise NotFound("no such sandbox order", code="not_found")
    order = await runtime.recharges.get_any(order_id)
    if order.provider != "sandbox":
        raise NotFound("no such sandbox order", code="not_found")
    return order


@sandbox.get("/pay/{order_id}", response_class=HTMLResponse)
async def sandbox_page(request: Request, order_id: str) -> HTMLResponse:
    order = await _sandbox_order(request, order_id)
    view = order_view(order)
    return HTMLResponse(
        _PAGE.format(
            order=html.escape(order.id),
            amount=html.escape(str(view.amount)),
            status=_STATUS.get(order.status, "unknown"),
        )
    )


@sandbox.post("/pay/{order_id}")
async def sandbox_pay(request: Request, order_id: str) -> JSONResponse:
    order = await _sandbox_order(request, order_id)
    payer = _runtime(request).gateway.sandbox
    assert payer is not None
    status = await payer.pay(order_view(order))
    return JSONResponse(
        {"order_id": order.id, "callback_status": status}, status_code=200 if status < 300 else 502
    )
