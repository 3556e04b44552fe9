"""gRPC `grpc.aio` server bootstrap: health, reflection, one interceptor (unstorable text refused, errors
mapped, metrics recorded), graceful stop."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from kit import metrics, text
from kit.errors import DomainError
from kit.telemetry import current_trace_id

log = logging.getLogger(__name__)


class ServerInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Refuses a request with text PostgreSQL cannot store in any string field (`kit.text`), maps
    `DomainError` to its status (code in trailing metadata), hides other failures as INTERNAL, and
    records per-method request counts and latency."""

    def __init__(self, service: str) -> None:
        self.service = service

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method.rsplit("/", 1)[-1]
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                self._wrap_unary(handler.unary_unary, method),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                self._wrap_stream(handler.unary_stream, method),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler

    def _wrap_unary(
        self, behavior: Callable[..., Awaitable[Any]], method: str
    ) -> Callable[..., Awaitable[Any]]:
        async def wrapper(request: Any, context: grpc.aio.ServicerContext) -> Any:
            started = time.perf_counter()
            try:
                async with self._answering(request, context, method):
                    response = await behavior(request, context)
                return response
            finally:
                trace_id = current_trace_id()
                metrics.RPC_LATENCY.labels(self.service, method).observe(
                    time.perf_counter() - started, exemplar={"trace_id": trace_id} if trace_id else None
                )

        return wrapper

    def _wrap_stream(
        self, behavior: Callable[..., AsyncIterator[Any]], method: str
    ) -> Callable[..., AsyncIterator[Any]]:
        async def wrapper(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            async with self._answering(request, context, method):
                async for item in behavior(request, context):
                    yield item

        return wrapper

    @contextlib.asynccontextmanager
    async def _answering(
        self, request: Any, context: grpc.aio.ServicerContext, method: str
    ) -> AsyncIterator[None]:
        """Around one call: checks the request's text, turns what the handler raised into its status,
        and counts the call under that status's name."""
        code = "OK"
        try:
            text.check_message(request)
            yield
        except DomainError as exc:
            code = exc.status.name
            await context.abort(exc.status, exc.message, trailing_metadata=exc.trailing_metadata())
        except grpc.aio.AbortError:
            code = "ABORTED_BY_HANDLER"
            raise
        except Exception:
            code = "INTERNAL"
            log.exception("unhandled error in %s/%s", self.service, method)
            await context.abort(grpc.StatusCode.INTERNAL, "internal error")
        finally:
            metrics.RPC_REQUESTS.labels(self.service, method, code).inc()


class GrpcServer:
    """A `grpc.aio` server with the standard health and reflection services."""

    def __init__(self, service: str, *, host: str, port: int, max_connection_age: float = 300.0) -> None:
        self.service = service
        self.server = grpc.aio.server(
            interceptors=[ServerInterceptor(service)],
            options=[
                ("grpc.max_receive_message_length", 64 * 1024 * 1024),
                ("grpc.max_send_message_length", 64 * 1024 * 1024),
                ("grpc.so_reuseport", 0),
                # A client connection is closed (GOAWAY) after about this age, calls in flight get the
                # grace, and the client reconnects through its resolver: new replicas get traffic.
                ("grpc.max_connection_age_ms", int(max_connection_age * 1000)),
                ("grpc.max_connection_age_grace_ms", 30_000),
            ],
        )
        self.health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        self.address = f"{host}:{port}"
        self.port = 0
        self._service_names: list[str] = [health.SERVICE_NAME, reflection.SERVICE_NAME]

    def add(self, full_service_name: str) -> None:
        """Register a servicer's full name (e.g. `atelier.ledger.v1.LedgerService`) for health/reflection."""
        self._service_names.append(full_service_name)

    async def start(self) -> int:
        reflection.enable_server_reflection(self._service_names, self.server)
        self.port = self.server.add_insecure_port(self.address)
        await self.server.start()
        for name in ("", *self._service_names):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info("gRPC server listening", extra={"address": self.address, "port": self.port})
        return self.port

    async def stop(self, grace: float) -> None:
        """Report NOT_SERVING, then drain in-flight calls for up to `grace` seconds."""
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)
