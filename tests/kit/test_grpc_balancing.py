"""Clients spread calls over every replica their target resolves to, and servers age connections out so a
replica that starts later gets its share."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator

import grpc
import pytest

from kit import grpc_client
from kit.access import SELF, Authorizer
from kit.grpc_server import GrpcServer


def _replica(name: str, *, max_connection_age: float = 300.0) -> GrpcServer:
    async def whoami(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        # The peer is the client's end of the connection: a new port means a new connection.
        return f"{name} {context.peer()}".encode()

    access = Authorizer({"test.Who": {"Am": {"tests": SELF}}}, None, tls=False)
    server = GrpcServer(name, host="127.0.0.1", port=0, max_connection_age=max_connection_age, access=access)
    handlers = {"Am": grpc.unary_unary_rpc_method_handler(whoami)}
    server.server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("test.Who", handlers),))
    return server


@pytest.fixture
async def replicas() -> AsyncIterator[list[int]]:
    servers = [_replica("a"), _replica("b")]
    ports = [await server.start() for server in servers]
    yield ports
    for server in servers:
        await server.stop(0.5)


async def _answers(target: str, calls: int) -> Counter[str]:
    async with grpc_client.channel(target, workload="tests") as channel:
        whoami = channel.unary_unary("/test.Who/Am")
        return Counter([(await whoami(b"")).decode().split()[0] for _ in range(calls)])


async def test_calls_go_round_robin_over_every_address(replicas: list[int]) -> None:
    target = "ipv4:" + ",".join(f"127.0.0.1:{port}" for port in replicas)

    answers = await _answers(target, 40)

    # Strict turns once both connections are up; the first call or two may go to whichever came up first.
    assert set(answers) == {"a", "b"}
    assert min(answers.values()) >= 18


async def test_a_server_closes_old_connections_so_clients_reconnect() -> None:
    server = _replica("short", max_connection_age=0.3)
    port = await server.start()
    try:
        async with grpc_client.channel(f"127.0.0.1:{port}", workload="tests") as channel:
            whoami = channel.unary_unary("/test.Who/Am")
            peers = set()
            for _ in range(15):  # 1.5 s of calls, every one answered
                answer = (await whoami(b"")).decode()
                assert answer.startswith("short ")
                peers.add(answer.split()[1])
                await asyncio.sleep(0.1)
        # The server sent GOAWAY once each connection was about 0.3 s old, and the client connected again.
        assert len(peers) >= 3
    finally:
        await server.stop(0.5)
