"""`GET /v1/events`: server-sent events with the caller's balance changes, task and run progress.

Browsers' EventSource cannot send headers, so besides `Authorization: Bearer` this endpoint accepts a
session access token (never an API key) in `?access_token=`; it is short-lived and used only here.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials

from atelier.ledger.v1 import ledger_pb2
from gateway.auth import Principal, current_identity, session_principal
from gateway.convert import to_json
from gateway.live import LiveEvent
from gateway.problems import Problem
from gateway.routes.billing import ledger

router = APIRouter(tags=["live"])
KEEPALIVE_SECONDS = 15.0


async def _principal(request: Request, access_token: str | None) -> Principal:
    if access_token:
        if access_token.startswith(("atl_live_", "atl_test_")):
            raise Problem(400, "api_key_in_url", "send API keys in the Authorization header, never in a URL")
        return await session_principal(request, access_token)
    header = request.headers.get("authorization", "")
    scheme, _, credential = header.partition(" ")
    credentials = (
        HTTPAuthorizationCredentials(scheme=scheme, credentials=credential)
        if scheme.lower() == "bearer"
        else None
    )
    return await current_identity(request, credentials)


@router.get(
    "/v1/events",
    summary="Live updates (text/event-stream): balance, task, run and recharge events for the caller",
    response_class=StreamingResponse,
)
async def events(
    request: Request, access_token: Annotated[str | None, Query(max_length=4096)] = None
) -> StreamingResponse:
    principal = await _principal(request, access_token)
    hub = request.app.state.live
    first = await ledger(request).GetBalance(
        ledger_pb2.GetBalanceRequest(user_id=principal.user_id), metadata=principal.metadata()
    )

    async def stream() -> AsyncIterator[str]:
        async with hub.stream(principal.user_id) as queue:
            last_version = first.balance.version
            yield LiveEvent("balance", to_json(first.balance)).sse()
            while not await request.is_disconnected():
                try:
                    event = await asyncio.wait_for(queue.get(), timeout=KEEPALIVE_SECONDS)
                except TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                if event.name == "balance":
                    version = int(event.data.get("version", 0))
                    if version <= last_version:
                        continue  # an older update that arrived late
                    last_version = version
                yield event.sse()

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
