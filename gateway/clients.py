"""gRPC channels to every service, made at startup and closed at shutdown."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from kit import grpc_client
from kit.settings import SERVICES, Settings


@dataclass
class Clients:
    channels: dict[str, grpc.aio.Channel] = field(default_factory=dict)

    @classmethod
    def connect(cls, settings: Settings) -> Clients:
        return cls({name: grpc_client.to_peer(settings, name, workload="gateway") for name in SERVICES})

    async def health(self, per_call_timeout: float) -> dict[str, str]:
        """Each service's gRPC health status name (SERVING, NOT_SERVING, UNREACHABLE)."""

        async def check(name: str, channel: grpc.aio.Channel) -> tuple[str, str]:
            stub = health_pb2_grpc.HealthStub(channel)
            try:
                reply = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=per_call_timeout)
            except grpc.aio.AioRpcError:
                return name, "UNREACHABLE"
            return name, health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)

        results = await asyncio.gather(*(check(n, c) for n, c in self.channels.items()))
        return dict(results)

    async def close(self) -> None:
        await asyncio.gather(*(channel.close() for channel in self.channels.values()))
