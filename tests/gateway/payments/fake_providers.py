"""Fake Alipay, WeChat Pay and Stripe APIs (served over real HTTP in the tests) that check our request
signatures and sign their answers the way the real ones do."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.gateway.payments.signers import (
    WECHAT_APPID,
    WECHAT_MCHID,
    WECHAT_SERIALS,
    Keys,
    rsa_sign,
    rsa_verify,
    wechat_headers,
)


@dataclass
class ProviderState:
    keys: Keys
    # out_trade_no → (trade_status, total_amount "300.00")
    alipay: dict[str, tuple[str, str]] = field(default_factory=dict)
    # out_trade_no → (trade_state, total fen)
    wechat: dict[str, tuple[str, int]] = field(default_factory=dict)
    # session id → session object
    stripe: dict[str, dict[str, Any]] = field(default_factory=dict)
    stripe_idempotency: dict[str, str] = field(default_factory=dict)
    # Every request we received, and whether its signature was right.
    seen: list[tuple[str, bool]] = field(default_factory=list)


def _alipay_sign_ok(params: dict[str, str], app_key: rsa.RSAPrivateKey) -> bool:
    content = "&".join(f"{k}={v}" for k, v in sorted(params.items()) if k != "sign" and v)
    return rsa_verify(app_key.public_key(), content.encode(), params.get("sign", ""))


def build_app(state: ProviderState) -> Starlette:
    keys = state.keys

    async def alipay_gateway(request: Request) -> Response:
        params = dict(parse_qsl((await request.body()).decode(), keep_blank_values=True))
        ok = _alipay_sign_ok(params, keys.alipay_app) and params.get("method") == "alipay.trade.query"
        state.seen.append(("alipay", ok))
        if not ok:
            inner: dict[str, Any] = {
                "code": "40002",
                "msg": "Invalid Arguments",
                "sub_code": "isv.invalid-signature",
            }
        else:
            order_id = json.loads(params["biz_content"])["out_trade_no"]
            if order_id not in state.alipay:
                inner = {"code": "40004", "msg": "Business Failed", "sub_code": "ACQ.TRADE_NOT_EXIST"}
            else:
                status, total = state.alipay[order_id]
                inner = {
                    "code": "10000",
                    "msg": "Success",
                    "trade_no": f"2026112522001{secrets.randbelow(10**9):09d}",
                    "out_trade_no": order_id,
                    "trade_status": status,
                    "total_amount": total,
                    "buyer_pay_amount": total,
                }
        content = json.dumps(inner, ensure_ascii=False, separators=(",", ":"))
        sign = rsa_sign(keys.alipay_platform, content.encode())
        raw = '{"alipay_trade_query_response":' + content + ',"sign":"' + sign + '"}'
        return Response(raw, media_type="application/json;charset=utf-8")

    async def wechat_query(request: Request) -> Response:
        auth = request.headers.get("authorization", "")
        scheme, _, rest = auth.partition(" ")
        fields = (
            {k: v.strip('"') for k, v in (item.split("=", 1) for item in rest.split(","))} if rest else {}
        )
        path = request.url.path + ("?" + request.url.query if request.url.query else "")
        message = f"GET\n{path}\n{fields.get('timestamp')}\n{fields.get('nonce_str')}\n\n".encode()
        ok = (
            scheme == "WECHATPAY2-SHA256-RSA2048"
            and fields.get("mchid") == WECHAT_MCHID
            and request.query_params.get("mchid") == WECHAT_MCHID
            and rsa_verify(keys.wechat_merchant.public_key(), message, fields.get("signature", ""))
        )
        state.seen.append(("wechatpay", ok))
        order_id = request.path_params["order_id"]
        document: dict[str, object]
        if not ok:
            status, document = 401, {"code": "SIGN_ERROR", "message": "签名错误"}
        elif order_id not in state.wechat:
            status, document = 404, {"code": "ORDER_NOT_EXIST", "message": "订单不存在"}
        else:
            trade_state, total = state.wechat[order_id]
            status, document = (
                200,
                {
                    "appid": WECHAT_APPID,
                    "mchid": WECHAT_MCHID,
                    "out_trade_no": order_id,
                    "transaction_id": f"4200001{secrets.randbelow(10**9):09d}",
                    "trade_type": "NATIVE",
                    "trade_state": trade_state,
                    "amount": {"total": total, "payer_total": total, "currency": "CNY"},
                },
            )
        body = json.dumps(document, ensure_ascii=False).encode()
        # Responses are signed by the newer of the two platform keys.
        headers = wechat_headers(body, keys.wechat_platform[1], WECHAT_SERIALS[1])
        return Response(body, status_code=status, headers=headers)

    async def stripe_sessions(request: Request) -> Response:
        ok = request.headers.get("authorization") == "Bearer sk_test_0123456789"
        state.seen.append(("stripe", ok))
        if not ok:
            return JSONResponse({"error": {"type": "invalid_request_error"}}, status_code=401)
        if request.method == "GET":
            session = state.stripe.get(request.path_params["session_id"])
            if session is None:
                return JSONResponse(
                    {"error": {"type": "invalid_request_error", "code": "resource_missing"}}, 404
                )
            return JSONResponse(session)
        key = request.headers.get("idempotency-key", "")
        if key in state.stripe_idempotency:
            return JSONResponse(state.stripe[state.stripe_idempotency[key]])
        form = dict(parse_qsl((await request.body()).decode()))
        session_id = f"cs_test_{secrets.token_hex(8)}"
        session = {
            "id": session_id,
            "object": "checkout.session",
            "url": f"https://checkout.stripe.com/c/pay/{session_id}",
            "client_reference_id": form.get("client_reference_id"),
            "amount_total": int(form["line_items[0][price_data][unit_amount]"]),
            "currency": form["line_items[0][price_data][currency]"],
            "status": "open",
            "payment_status": "unpaid",
            "payment_intent": None,
            "form": form,
        }
        state.stripe[session_id] = session
        if key:
            state.stripe_idempotency[key] = session_id
        return JSONResponse(session)

    return Starlette(
        routes=[
            Route("/gateway.do", alipay_gateway, methods=["POST"]),
            Route("/v3/pay/transactions/out-trade-no/{order_id}", wechat_query, methods=["GET"]),
            Route("/v1/checkout/sessions", stripe_sessions, methods=["POST"]),
            Route("/v1/checkout/sessions/{session_id}", stripe_sessions, methods=["GET"]),
        ]
    )
