"""The shared gRPC bootstrap: domain errors keep their status and code across the wire; other failures
are hidden as INTERNAL; health answers SERVING."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, TypeAlias

import grpc
import pytest
from google.protobuf import struct_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from kit import grpc_client
from kit.access import SELF, Authorizer
from kit.errors import FailedPrecondition, InvalidArgument, Unavailable, from_rpc_error
from kit.grpc_server import GrpcServer


async def _fail_domain(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    raise FailedPrecondition("not enough credits", code="insufficient_balance", available="0.5")


async def _fail_bug(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    raise RuntimeError("secret internals")


async def _echo(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    return request


# What `Struct.update` takes: JSON, nested.
Json: TypeAlias = str | float | bool | Mapping[str, "Json"] | Sequence["Json"] | None

reached: list[struct_pb2.Struct] = []


async def _store(request: struct_pb2.Struct, context: grpc.aio.ServicerContext) -> struct_pb2.Struct:
    reached.append(request)
    return request


async def _store_stream(
    request: struct_pb2.Struct, context: grpc.aio.ServicerContext
) -> AsyncIterator[struct_pb2.Struct]:
    reached.append(request)
    yield request


def _serialize(message: struct_pb2.Struct) -> bytes:
    return message.SerializeToString()


@pytest.fixture
async def server() -> AsyncIterator[int]:
    methods = ("Domain", "Bug", "Echo", "Store", "StoreStream")
    table = {"test.Probe": {name: {"tests": SELF} for name in methods}}
    srv = GrpcServer("test", host="127.0.0.1", port=0, access=Authorizer(table, None, tls=False))
    handlers = {
        name: grpc.unary_unary_rpc_method_handler(fn)
        for name, fn in {"Domain": _fail_domain, "Bug": _fail_bug, "Echo": _echo}.items()
    }
    structs = {"request_deserializer": struct_pb2.Struct.FromString, "response_serializer": _serialize}
    handlers["Store"] = grpc.unary_unary_rpc_method_handler(_store, **structs)
    handlers["StoreStream"] = grpc.unary_stream_rpc_method_handler(_store_stream, **structs)
    srv.server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("test.Probe", handlers),))
    port = await srv.start()
    yield port
    await srv.stop(0.5)


async def test_domain_errors_cross_the_wire(server: int) -> None:
    async with grpc_client.channel(f"127.0.0.1:{server}", workload="tests") as channel:
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


async def test_a_client_call_raises_the_peers_domain_error(server: int) -> None:
    async with grpc_client.channel(f"127.0.0.1:{server}", workload="tests") as channel:
        assert await grpc_client.call(lambda: channel.unary_unary("/test.Probe/Echo")(b"hi")) == b"hi"
        with pytest.raises(FailedPrecondition) as domain:
            await grpc_client.call(lambda: channel.unary_unary("/test.Probe/Domain")(b""))
        assert (domain.value.code, domain.value.details) == ("insufficient_balance", {"available": "0.5"})
        with pytest.raises(Unavailable) as bug:
            await grpc_client.call(lambda: channel.unary_unary("/test.Probe/Bug")(b""))
        assert bug.value.code == "upstream_unavailable"


async def test_health_reports_serving(server: int) -> None:
    async with grpc_client.channel(f"127.0.0.1:{server}", workload="tests") as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def _finish(call: Any) -> None:
    if isinstance(call, grpc.aio.UnaryStreamCall):
        async for _ in call:
            pass
    else:
        await call


@pytest.mark.parametrize(
    ("document", "field"),
    [
        ({"title": "a\x00b"}, "fields[title].string_value"),
        ({"ok": "fine", "tags": ["x", "y\x00"]}, "fields[tags].list_value.values[1].string_value"),
        (
            {"outer": {"inner": {"deep": "\x00"}}},
            "fields[outer].struct_value.fields[inner].struct_value.fields[deep].string_value",
        ),
        ({"key\x00": 1}, "fields[key\\u0000]"),
    ],
)
async def test_every_method_refuses_unstorable_text_in_any_string_field(
    server: int, document: dict[str, Json], field: str
) -> None:
    """Nested, repeated and map fields alike, for unary and streaming methods, before the method runs."""
    request = struct_pb2.Struct()
    request.update(document)
    reached.clear()
    async with grpc_client.channel(f"127.0.0.1:{server}", workload="tests") as channel:
        for call in (
            channel.unary_unary("/test.Probe/Store", request_serializer=_serialize),
            channel.unary_stream("/test.Probe/StoreStream", request_serializer=_serialize),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await _finish(call(request))
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            rebuilt = from_rpc_error(caught.value)
            assert isinstance(rebuilt, InvalidArgument)
            assert (rebuilt.code, rebuilt.details) == ("invalid_text", {"field": field})
        assert reached == []
        clean = struct_pb2.Struct()
        clean.update({"title": "写 ✓", "tags": ["a", "b"]})
        await channel.unary_unary("/test.Probe/Store", request_serializer=_serialize)(clean)
        assert reached == [clean]
