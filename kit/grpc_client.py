"""gRPC client channels: mTLS with the workload's certificate, default deadlines, retries of transient
failures, and the user token of the call being served forwarded on its synchronous hops.

Retrying is safe because every mutation in Atelier carries a caller-chosen id and is idempotent.

Python's gRPC cannot swap a channel's client certificate, so with TLS a `channel` is a `RotatingChannel`:
before a call it looks at the workload's files (`kit.tls.TlsFiles`, at most once a second), and when they
changed it opens a new channel for the calls that follow while the old one drains.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

import grpc

from kit.errors import DomainError, Unavailable, from_rpc_error
from kit.identity import CURRENT
from kit.settings import Settings
from kit.tls import WORKLOAD_HEADER, TlsFiles, files_for
from kit.user_tokens import HEADER as USER_TOKEN_HEADER

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


EditCall = Callable[[grpc.aio.ClientCallDetails, Any], grpc.aio.ClientCallDetails]


class _UnaryEdit(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    def __init__(self, edit: EditCall) -> None:
        self.edit = edit

    async def intercept_unary_unary(
        self, continuation: Callable[..., Awaitable[Any]], details: grpc.aio.ClientCallDetails, request: Any
    ) -> Any:
        return await continuation(self.edit(details, request), request)


class _StreamEdit(grpc.aio.UnaryStreamClientInterceptor):  # type: ignore[misc]
    def __init__(self, edit: EditCall) -> None:
        self.edit = edit

    async def intercept_unary_stream(
        self, continuation: Callable[..., Awaitable[Any]], details: grpc.aio.ClientCallDetails, request: Any
    ) -> Any:
        return await continuation(self.edit(details, request), request)


def editing(edit: EditCall, *, streams: bool = True) -> list[grpc.aio.ClientInterceptor]:
    """Interceptors applying `edit` to each call's details. gRPC files an interceptor under one kind
    only (the first it implements), so unary and server-streaming calls each get their own."""
    return [_UnaryEdit(edit), _StreamEdit(edit)] if streams else [_UnaryEdit(edit)]


def with_metadata(details: grpc.aio.ClientCallDetails, *pairs: tuple[str, str]) -> grpc.aio.ClientCallDetails:
    """`details` with `pairs` added, each unless the call already carries that key."""
    metadata = grpc.aio.Metadata(*(details.metadata or ()))
    for key, value in pairs:
        if key not in metadata:
            metadata.add(key, value)
    return grpc.aio.ClientCallDetails(
        details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
    )


def _default_deadline(timeout: float) -> EditCall:
    """Unary calls without a deadline get `timeout`; streams (downloads) run as long as they need."""

    def edit(details: grpc.aio.ClientCallDetails, request: Any) -> grpc.aio.ClientCallDetails:
        if details.timeout is not None:
            return details
        return grpc.aio.ClientCallDetails(
            details.method, timeout, details.metadata, details.credentials, details.wait_for_ready
        )

    return edit


def _caller(claim: str | None) -> EditCall:
    """Adds the user token of the call being served (if any), and on a plaintext channel the workload's
    claim (`kit.access` believes it only outside production)."""

    def edit(details: grpc.aio.ClientCallDetails, request: Any) -> grpc.aio.ClientCallDetails:
        serving = CURRENT.get()
        pairs = []
        if serving is not None and serving.token:
            pairs.append((USER_TOKEN_HEADER, serving.token))
        if claim:
            pairs.append((WORKLOAD_HEADER, claim))
        return with_metadata(details, *pairs) if pairs else details

    return edit


def _interceptors(timeout: float, claim: str | None) -> list[grpc.aio.ClientInterceptor]:
    return [*editing(_default_deadline(timeout), streams=False), *editing(_caller(claim))]


_OPTIONS = [
    ("grpc.enable_retries", 1),
    ("grpc.service_config", _SERVICE_CONFIG),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
]


def channel(
    target: str,
    *,
    workload: str,
    tls: TlsFiles | None = None,
    peer: str = "",
    timeout: float = DEFAULT_TIMEOUT,
) -> grpc.aio.Channel:
    """A channel to `target` for `workload`. With `tls`, the server must present a certificate for
    `peer` (the service's name) from the same CA, and this workload presents its own."""
    if tls is None:
        return grpc.aio.insecure_channel(
            target, options=_OPTIONS, interceptors=_interceptors(timeout, workload)
        )
    if not peer:
        raise ValueError("a TLS channel needs the peer service's name")

    def open_channel() -> grpc.aio.Channel:
        return grpc.aio.secure_channel(
            target,
            tls.channel_credentials(),
            options=[*_OPTIONS, ("grpc.ssl_target_name_override", peer)],
            interceptors=_interceptors(timeout, None),
        )

    return cast(grpc.aio.Channel, RotatingChannel(open_channel, tls))


def to_peer(
    settings: Settings, peer: str, *, workload: str, timeout: float = DEFAULT_TIMEOUT
) -> grpc.aio.Channel:
    """A channel from this process (`workload`) to the service `peer`, as `settings` configure both."""
    return channel(
        settings.service_addr(peer),
        workload=workload,
        tls=files_for(settings.grpc_tls_dir),
        peer=peer,
        timeout=timeout,
    )


class RotatingChannel:
    """Stands in for a `grpc.aio.Channel` (what stubs use of it), re-opened when the TLS files change.
    The replaced channel is closed after `grace` seconds, letting calls in flight finish."""

    def __init__(
        self, open_channel: Callable[[], grpc.aio.Channel], tls: TlsFiles, grace: float = 60.0
    ) -> None:
        self._open = open_channel
        self._tls = tls
        self._grace = grace
        self._fingerprint = tls.current.fingerprint
        self._channel = open_channel()
        self._retiring: set[asyncio.Task[None]] = set()

    def current(self) -> grpc.aio.Channel:
        self._tls.reload()
        fingerprint = self._tls.current.fingerprint
        if fingerprint != self._fingerprint:
            retired, self._channel, self._fingerprint = self._channel, self._open(), fingerprint
            task = asyncio.get_running_loop().create_task(retired.close(self._grace))
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)
        return self._channel

    def unary_unary(self, method: str, *args: Any, **kwargs: Any) -> _Multicallable:
        return _Multicallable(self, "unary_unary", method, args, kwargs)

    def unary_stream(self, method: str, *args: Any, **kwargs: Any) -> _Multicallable:
        return _Multicallable(self, "unary_stream", method, args, kwargs)

    async def channel_ready(self) -> None:
        await self.current().channel_ready()

    def get_state(self, try_to_connect: bool = False) -> grpc.ChannelConnectivity:
        return self.current().get_state(try_to_connect)

    async def close(self, grace: float | None = None) -> None:
        await self._channel.close(grace)
        for task in list(self._retiring):
            task.cancel()

    async def __aenter__(self) -> RotatingChannel:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class _Multicallable:
    """One RPC of a `RotatingChannel`: each call goes to the channel current at the time."""

    def __init__(
        self, owner: RotatingChannel, kind: str, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        self._owner, self._kind, self._method, self._args, self._kwargs = owner, kind, method, args, kwargs
        self._bound: tuple[grpc.aio.Channel | None, Any] = (None, None)

    def __call__(self, request: Any, **kwargs: Any) -> Any:
        channel = self._owner.current()
        if self._bound[0] is not channel:
            self._bound = (channel, getattr(channel, self._kind)(self._method, *self._args, **self._kwargs))
        return self._bound[1](request, **kwargs)


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
