"""The shared gRPC bootstrap: domain errors keep their status and code across the wire; other failures
are hidden as INTERNAL; health answers SERVING."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from kit import grpc_client
from kit.errors import FailedPrecondition, from_rpc_error
from kit.grpc_server import GrpcServer


async def _fail_domain(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    raise FailedPrecondition("not enough credits", code="insufficient_balance", available="0.5")


async def _fail_bug(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    raise RuntimeError("secret internals")


async def _echo(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    return request


@pytest.fixture
async def server() -> AsyncIterator[int]:
    srv = GrpcServer("test", host="127.0.0.1", port=0)
    handlers = {
        name: grpc.unary_unary_rpc_method_handler(fn)
        for name, fn in {"Domain": _fail_domain, "Bug": _fail_bug, "Echo": _echo}.items()
    }
    srv.server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("test.Probe", handlers),))
    port = await srv.start()
    yield port
    await srv.stop(0.5)


async def test_domain_errors_cross_the_wire(server: int) -> None:
    async with grpc_client.channel(f"127.0.0.1:{server}") as channel:
        assert await channel.unary_unary("/test.Probe/Echo")(b"hi") == b"hi"
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await channel.unary_unary("/test.Probe/Domain")(b"")
        assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        rebuilt = from_rpc_error(caught.value)
        assert isinstance(rebuilt, FailedPrecondition)
        assert rebuilt.code == "insufficient_balance"
        assert rebuilt.details == {"available": "0.5"}

        with pytest.raises(grpc.aio.AioRpcError) as bug:
            await channel.unary_unary("/test.Probe/Bug")(b"")
        assert bug.value.code() == grpc.StatusCode.INTERNAL
        assert "secret" not in (bug.value.details() or "")
        assert from_rpc_error(bug.value) is None


async def test_health_reports_serving(server: int) -> None:
    async with grpc_client.channel(f"127.0.0.1:{server}") as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
