"""Fakes served over the real wire: a `GrpcServer` (with the shared error interceptor, so a fake's
`DomainError` reaches the caller as the real service's status and code) on a free local port."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import grpc

from kit.grpc_server import GrpcServer

# A generated `add_<Service>Servicer_to_server`, and the servicer it adds.
Servicer = tuple[Callable[[Any, grpc.aio.Server], None], object]


@asynccontextmanager
async def serve(name: str, *servicers: Servicer) -> AsyncIterator[str]:
    """`servicers` on one server named `name`; yields its address, stops it on the way out."""
    server = GrpcServer(name, host="127.0.0.1", port=0)
    for add, servicer in servicers:
        add(servicer, server.server)
    port = await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(0.2)
