"""gRPC client channels with default deadlines and retries of transient failures.

Retrying is safe because every mutation in Atelier carries a caller-chosen id and is idempotent.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc

from kit.errors import DomainError, Unavailable, from_rpc_error

DEFAULT_TIMEOUT = 10.0
T = TypeVar("T")

_SERVICE_CONFIG = json.dumps(
    {
        # Every address the target resolves to gets calls in turn: `dns:///ledger:50053` over a headless
        # Service's pods in Kubernetes, `ipv4:127.0.0.1:50053,127.0.0.1:51053` for the launcher's cluster.
        "loadBalancingConfig": [{"round_robin": {}}],
        "methodConfig": [
            {
                "name": [{}],
                "retryPolicy": {
                    "maxAttempts": 5,
                    "initialBackoff": "0.1s",
                    "maxBackoff": "2s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ],
    }
)


class _DefaultDeadline(grpc.aio.UnaryUnaryClientInterceptor, grpc.aio.UnaryStreamClientInterceptor):  # type: ignore[misc]
    def __init__(self, timeout: float) -> None:
        self.timeout = timeout

    def _with_deadline(self, details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        if details.timeout is not None:
            return details
        return grpc.aio.ClientCallDetails(
            details.method, self.timeout, details.metadata, details.credentials, details.wait_for_ready
        )

    async def intercept_unary_unary(
        self, continuation: Callable[..., Awaitable[Any]], details: grpc.aio.ClientCallDetails, request: Any
    ) -> Any:
        return await continuation(self._with_deadline(details), request)

    async def intercept_unary_stream(
        self, continuation: Callable[..., Awaitable[Any]], details: grpc.aio.ClientCallDetails, request: Any
    ) -> Any:
        return await continuation(self._with_deadline(details), request)


def channel(target: str, *, timeout: float = DEFAULT_TIMEOUT) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(
        target,
        options=[
            ("grpc.enable_retries", 1),
            ("grpc.service_config", _SERVICE_CONFIG),
            ("grpc.keepalive_time_ms", 30_000),
            ("grpc.max_receive_message_length", 64 * 1024 * 1024),
            ("grpc.max_send_message_length", 64 * 1024 * 1024),
        ],
        interceptors=[_DefaultDeadline(timeout)],
    )


def domain_error(error: grpc.aio.AioRpcError) -> DomainError:
    """The peer's domain error, or `Unavailable` for transport failures and hidden internal errors."""
    rebuilt = from_rpc_error(error)
    if rebuilt is not None:
        return rebuilt
    return Unavailable(f"upstream service failed: {error.code().name}", code="upstream_unavailable")


async def call(rpc: Callable[[], Awaitable[T]]) -> T:
    """Make one call to a peer; its failure comes back as a DomainError (see `domain_error`)."""
    try:
        return await rpc()
    except grpc.aio.AioRpcError as exc:
        raise domain_error(exc) from exc
