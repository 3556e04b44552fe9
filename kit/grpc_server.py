"""gRPC `grpc.aio` server bootstrap: mTLS, health, reflection, one interceptor (caller authorized, unstorable
text refused, errors mapped, metrics recorded), graceful stop."""

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
from kit.access import ACCESS, Authorizer
from kit.errors import DomainError
from kit.identity import CURRENT
from kit.settings import Settings
from kit.telemetry import current_trace_id
from kit.tls import TlsFiles
from kit.user_tokens import UserTokenVerifier

log = logging.getLogger(__name__)


class ServerInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Lets a call through only as `kit.access` allows (the verified caller is `kit.identity.CURRENT` for
    the handler), refuses a request with text PostgreSQL cannot store in any string field (`kit.text`),
    maps `DomainError` to its status (code in trailing metadata), hides other failures as INTERNAL, and
    records per-method request counts and latency."""

    def __init__(self, service: str, access: Authorizer) -> None:
        self.service = service
        self.access = access

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
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
        if handler.stream_stream:  # reflection: authorized on its method alone, before the first message
            return grpc.stream_stream_rpc_method_handler(
                self._wrap_stream(handler.stream_stream, method, streams_requests=True),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        # No Atelier RPC streams its requests into a single reply: nothing of that kind is let through.
        return None

    def _wrap_unary(
        self, behavior: Callable[..., Awaitable[Any]], method: str
    ) -> Callable[..., Awaitable[Any]]:
        name = method.rsplit("/", 1)[-1]

        async def wrapper(request: Any, context: grpc.aio.ServicerContext) -> Any:
            started = time.perf_counter()
            try:
                async with self._answering(request, context, method, name):
                    response = await behavior(request, context)
                return response
            finally:
                trace_id = current_trace_id()
                metrics.RPC_LATENCY.labels(self.service, name).observe(
                    time.perf_counter() - started, exemplar={"trace_id": trace_id} if trace_id else None
                )

        return wrapper

    def _wrap_stream(
        self, behavior: Callable[..., AsyncIterator[Any]], method: str, *, streams_requests: bool = False
    ) -> Callable[..., AsyncIterator[Any]]:
        name = method.rsplit("/", 1)[-1]

        async def wrapper(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            # A streamed request is an iterator of messages: decided on the method alone.
            async with self._answering(None if streams_requests else request, context, method, name):
                async for item in behavior(request, context):
                    yield item

        return wrapper

    @contextlib.asynccontextmanager
    async def _answering(
        self, request: Any, context: grpc.aio.ServicerContext, method: str, name: str
    ) -> AsyncIterator[None]:
        """Around one call (`method` in full, `name` its last part): authorizes the caller, checks the
        request's text (None: a streamed request), turns what the handler raised into its status, and
        counts the call under that status's name."""
        code = "OK"
        bound = None
        try:
            bound = CURRENT.set(self.access.authorize(method, request, context))
            if request is not None:
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
            log.exception("unhandled error in %s/%s", self.service, name)
            await context.abort(grpc.StatusCode.INTERNAL, "internal error")
        finally:
            if bound is not None:
                # A stream's generator may be closed from another context (a cancelled call); the
                # call's task ends with it anyway.
                with contextlib.suppress(ValueError):
                    CURRENT.reset(bound)
            metrics.RPC_REQUESTS.labels(self.service, name, code).inc()


def authorizer(settings: Settings, *, tls: bool) -> Authorizer:
    """The product's table, verifying user tokens with the public keys `settings` names."""
    path = settings.user_token_public_keys_file
    return Authorizer(ACCESS, UserTokenVerifier(path) if path else None, tls=tls)


class GrpcServer:
    """A `grpc.aio` server with the standard health and reflection services.

    With `tls`, only clients holding a certificate from its CA connect, and `health_port` (when set)
    serves the health service alone, in plaintext, for probes that cannot present a certificate (the
    kubelet's). `access` decides every call; by default the product's table, with the user-token keys
    from this process's settings (`ATELIER_*` variables)."""

    def __init__(
        self,
        service: str,
        *,
        host: str,
        port: int,
        max_connection_age: float = 300.0,
        tls: TlsFiles | None = None,
        health_port: int = 0,
        access: Authorizer | None = None,
    ) -> None:
        self.service = service
        self.tls = tls
        access = access or authorizer(Settings(), tls=tls is not None)
        self.server = grpc.aio.server(
            interceptors=[ServerInterceptor(service, access)],
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
        self.health_server: grpc.aio.Server | None = None
        if tls is not None and health_port:
            self.health_server = grpc.aio.server()
            health_pb2_grpc.add_HealthServicer_to_server(self.health, self.health_server)
            self.health_server.add_insecure_port(f"{host}:{health_port}")

    def add(self, full_service_name: str) -> None:
        """Register a servicer's full name (e.g. `atelier.ledger.v1.LedgerService`) for health/reflection."""
        self._service_names.append(full_service_name)

    async def start(self) -> int:
        reflection.enable_server_reflection(self._service_names, self.server)
        if self.tls is not None:
            self.port = self.server.add_secure_port(self.address, self.tls.server_credentials())
        else:
            self.port = self.server.add_insecure_port(self.address)
        await self.server.start()
        if self.health_server is not None:
            await self.health_server.start()
        for name in ("", *self._service_names):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info(
            "gRPC server listening",
            extra={"address": self.address, "port": self.port, "tls": self.tls is not None},
        )
        return self.port

    async def stop(self, grace: float) -> None:
        """Report NOT_SERVING, then drain in-flight calls for up to `grace` seconds."""
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)
        if self.health_server is not None:
            await self.health_server.stop(0)
