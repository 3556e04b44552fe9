"""NATS JetStream: one connection per process, the project's streams, publishing and durable consumers.

Subjects are written logically ("tasks.completed"); a `namespace` setting prefixes them (and the stream
names) so that several stacks, such as parallel test runs, can share one NATS server.

With a workload's TLS files (`kit.tls`, the `grpc_tls_dir` setting) the connection is TLS and presents
the workload's certificate, which the server maps to the workload's user and its subject permissions
(devkit/nats_auth.py writes them); without, it is plaintext (development and tests on a shared server).
The connection is long-lived: a rotated certificate is loaded when it reconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import nats
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    KeyValueConfig,
    PubAck,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import BadRequestError, BucketNotFoundError, NotFoundError
from nats.js.kv import KeyValue
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace

from kit import metrics
from kit.settings import Settings
from kit.tls import TlsFiles, certificate_workload, files_for

log = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)

MSG_ID_HEADER = "Nats-Msg-Id"
DAY = 24 * 3600.0
QUEUE_SAMPLE_SECONDS = 15.0


@dataclass(frozen=True)
class Publication:
    """A message for `Bus.publish_many`: its logical subject, and the id JetStream de-duplicates on."""

    subject: str
    payload: bytes
    msg_id: str
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class StreamSpec:
    subjects: tuple[str, ...]
    retention: RetentionPolicy = RetentionPolicy.LIMITS
    max_age: float = 7 * DAY
    # JetStream drops a second publish with the same Nats-Msg-Id inside this window.
    duplicate_window: float = 600.0


STREAMS: dict[str, StreamSpec] = {
    "EVENTS": StreamSpec(("tasks.>", "runs.>", "catalog.>", "payments.>", "balances.>")),
    "JOBS": StreamSpec(("jobs.>",), retention=RetentionPolicy.WORK_QUEUE),
    "DLQ": StreamSpec(("dlq.>",), max_age=30 * DAY),
}


# Key-value buckets (streams underneath): name -> how long an untouched entry lives, in seconds.
KEY_VALUE_BUCKETS: dict[str, float] = {
    # gateway/ratelimits.py: one entry per limited key, useless once its window has passed.
    "RATELIMITS": 3600.0,
}


def namespaced_subject(namespace: str, logical: str) -> str:
    namespace = namespace.strip(".")
    return f"{namespace}.{logical}" if namespace else logical


def namespaced_stream(namespace: str, name: str) -> str:
    namespace = namespace.strip(".")
    return f"{namespace.upper().replace('.', '_')}_{name}" if namespace else name


def inbox_prefix(workload: str) -> str:
    """Where a workload's replies come (JetStream API answers, publish acks, pulled messages): each user
    may read only its own inboxes, so no workload sees the messages another one pulls."""
    return f"_INBOX.{workload}"


def tls_context(files: TlsFiles) -> ssl.SSLContext:
    """Verifies the server against the workload's CA and presents the workload's certificate."""
    context = ssl.create_default_context(cadata=files.current.ca.decode())
    context.load_cert_chain(files.directory / "tls.crt", files.directory / "tls.key")
    return context


def _follow_rotation(files: TlsFiles, context: ssl.SSLContext) -> Callable[[], Awaitable[None]]:
    """A disconnect callback (nats-py calls it before reconnecting) that loads changed files into the
    context the reconnection will use. A new CA is added to the trusted ones; the old stays trusted until
    the process restarts."""
    loaded = [files.current.fingerprint]

    async def on_disconnect() -> None:
        files.reload()
        material = files.current
        if material.fingerprint == loaded[0]:
            return
        try:
            context.load_verify_locations(cadata=material.ca.decode())
            context.load_cert_chain(files.directory / "tls.crt", files.directory / "tls.key")
        except (OSError, ssl.SSLError) as exc:  # replaced again meanwhile: the next disconnect retries
            log.warning("nats tls files not loaded: %r", exc)
            return
        loaded[0] = material.fingerprint
        log.info("nats tls files reloaded", extra={"fingerprint": material.fingerprint})

    return on_disconnect


class Retry(Exception):
    """Raised by a handler to ask for redelivery after `delay` seconds."""

    def __init__(self, reason: str, delay: float = 1.0) -> None:
        super().__init__(reason)
        self.delay = delay


class Permanent(Exception):
    """Raised by a handler for a message that can never succeed: it goes to the dead-letter subject."""


@dataclass
class Delivery:
    """One message handed to a handler."""

    subject: str
    data: bytes
    headers: dict[str, str]
    num_delivered: int
    _msg: Msg = field(repr=False)

    @property
    def event_id(self) -> str:
        return self.headers.get(MSG_ID_HEADER, "")

    async def in_progress(self) -> None:
        """Heartbeat for long jobs: resets the ack timer so the message is not redelivered."""
        await self._msg.in_progress()


Handler = Callable[[Delivery], Awaitable[None]]


class Bus:
    def __init__(self, nc: NatsClient, namespace: str = "") -> None:
        self.nc = nc
        self.js: JetStreamContext = nc.jetstream()
        self.namespace = namespace.strip(".")

    @classmethod
    async def connect(cls, url: str, *, namespace: str = "", name: str, tls: TlsFiles | None = None) -> Bus:
        """Connects to `url` (a cluster: its nodes' URLs, comma-separated); over TLS as the workload of
        `tls`'s certificate when given."""

        async def on_error(exc: Exception) -> None:
            log.warning("nats connection error: %s", exc)

        secured: dict[str, Any] = {}
        if tls is not None:
            context = tls_context(tls)
            workload = certificate_workload(tls.current.certificate)
            secured = {"tls": context, "disconnected_cb": _follow_rotation(tls, context)}
            if workload:
                secured["inbox_prefix"] = inbox_prefix(workload)
        nc = await nats.connect(
            [server.strip() for server in url.split(",") if server.strip()],
            name=name,
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.5,
            connect_timeout=3,
            error_cb=on_error,
            **secured,
        )
        return cls(nc, namespace)

    @classmethod
    async def from_settings(cls, settings: Settings, *, name: str) -> Bus:
        """The process's connection as its settings say: TLS with the workload's certificate when
        `grpc_tls_dir` is set."""
        return await cls.connect(
            settings.nats_url, namespace=settings.namespace, name=name, tls=files_for(settings.grpc_tls_dir)
        )

    # -- names -----------------------------------------------------------------------------------
    def subject(self, logical: str) -> str:
        return namespaced_subject(self.namespace, logical)

    def logical(self, subject: str) -> str:
        prefix = f"{self.namespace}." if self.namespace else ""
        return subject[len(prefix) :] if prefix and subject.startswith(prefix) else subject

    def stream(self, name: str) -> str:
        return namespaced_stream(self.namespace, name)

    # -- setup -----------------------------------------------------------------------------------
    async def ensure_streams(self, replicas: int = 1) -> None:
        """Creates the project's streams, or brings an existing one's subjects and limits up to date.

        `replicas` is what a new stream gets; an existing stream keeps its replica count when that is
        higher (raised by `nats stream edit --replicas 3`, or by an earlier configuration), so a starting
        service never lowers the durability of a running cluster. Lowering it is an operator's act.
        """
        for name, spec in STREAMS.items():
            stream = self.stream(name)
            config = StreamConfig(
                name=stream,
                subjects=[self.subject(s) for s in spec.subjects],
                retention=spec.retention,
                max_age=spec.max_age,
                duplicate_window=spec.duplicate_window,
                storage=StorageType.FILE,
                num_replicas=replicas,
            )
            try:
                current = await self.js.stream_info(stream)
            except NotFoundError:
                try:
                    await self.js.add_stream(config)
                    continue
                except BadRequestError:  # another process created it meanwhile
                    current = await self.js.stream_info(stream)
            kept = max(replicas, current.config.num_replicas or 1)
            if kept != replicas:
                log.info("stream %s keeps %d replicas (configured %d)", stream, kept, replicas)
            await self.js.update_stream(replace(config, num_replicas=kept))

    async def replicas(self, name: str) -> int:
        """How many replicas the stream `name` (a key of `STREAMS`) has now."""
        info = await self.js.stream_info(self.stream(name))
        return info.config.num_replicas or 1

    async def key_value(self, name: str, replicas: int = 1) -> KeyValue:
        """The key-value bucket `name` (a key of `KEY_VALUE_BUCKETS`) of this namespace, created on first
        use with `replicas` (an existing bucket keeps what it has)."""
        bucket = self.stream(name)
        try:
            return await self.js.key_value(bucket)
        except BucketNotFoundError:
            config = KeyValueConfig(
                bucket=bucket,
                history=1,
                ttl=KEY_VALUE_BUCKETS[name],
                replicas=replicas,
                storage=StorageType.FILE,
            )
            return await self.js.create_key_value(config)

    async def delete_streams(self) -> None:
        """Deletes this namespace's streams and buckets (those already gone are skipped): the teardown of a
        namespace made for one test run or benchmark."""
        for name in STREAMS:
            with contextlib.suppress(NotFoundError):
                await self.js.delete_stream(self.stream(name))
        for name in KEY_VALUE_BUCKETS:
            with contextlib.suppress(NotFoundError, BucketNotFoundError):
                await self.js.delete_key_value(self.stream(name))

    async def healthy(self) -> bool:
        if not self.nc.is_connected:
            return False
        try:
            await self.js.account_info()
        except Exception:
            return False
        return True

    # -- publishing ------------------------------------------------------------------------------
    async def publish(
        self,
        logical_subject: str,
        payload: bytes,
        *,
        msg_id: str,
        headers: Mapping[str, str] | None = None,
    ) -> PubAck:
        (ack,) = await self.publish_many([Publication(logical_subject, payload, msg_id, headers or {})])
        return ack

    async def publish_many(self, messages: Sequence[Publication], *, ack_wait: float = 5.0) -> list[PubAck]:
        """Sends every message in order, then waits for all their acknowledgements together (one
        round trip for the lot instead of one each). Raises if any is not stored; the caller may
        send them all again, since each keeps its `Nats-Msg-Id`."""
        acks = []
        for message in messages:
            all_headers = dict(message.headers)
            # An outbox row carries the trace of the change that wrote it: the publish joins that
            # trace, and the consumers join the publish (W3C traceparent in the message headers).
            parent = propagate.extract(all_headers) if "traceparent" in all_headers else None
            with tracer.start_as_current_span(
                f"{message.subject} publish",
                context=parent,
                kind=trace.SpanKind.PRODUCER,
                attributes={
                    "messaging.system": "nats",
                    "messaging.operation.type": "send",
                    "messaging.destination.name": message.subject,
                    "messaging.message.id": message.msg_id,
                },
            ):
                propagate.inject(all_headers)
                all_headers[MSG_ID_HEADER] = message.msg_id
                acks.append(
                    await self.js.publish_async(
                        self.subject(message.subject), message.payload, headers=all_headers
                    )
                )
        try:
            return list(await asyncio.wait_for(asyncio.gather(*acks), ack_wait))
        except BaseException:
            for ack in acks:
                ack.cancel()
            raise

    # -- consuming -------------------------------------------------------------------------------
    async def consume(
        self,
        *,
        durable: str,
        subject: str,
        handler: Handler,
        stop: asyncio.Event,
        stream: str = "EVENTS",
        max_deliver: int = 8,
        ack_wait: float = 30.0,
        batch: int = 16,
        concurrency: int = 1,
    ) -> None:
        """Pull `subject` with a durable consumer until `stop` is set.

        A handler that returns acks; `Retry` or any other exception naks with backoff; after
        `max_deliver` attempts, or on `Permanent`, the message goes to `dlq.<subject>` and is acked.
        """
        config = ConsumerConfig(
            durable_name=durable,
            ack_policy=AckPolicy.EXPLICIT,
            max_deliver=max_deliver,
            ack_wait=ack_wait,
            filter_subject=self.subject(subject),
            max_ack_pending=max(64, batch * concurrency * 4),
        )
        sub = await self._pull_subscribe(subject, durable, stream, config)
        limiter = asyncio.Semaphore(concurrency)
        in_flight: set[asyncio.Task[None]] = set()
        sample_at = 0.0
        while not stop.is_set():
            if time.monotonic() >= sample_at:
                sample_at = time.monotonic() + QUEUE_SAMPLE_SECONDS
                await self._sample_pending(sub, stream, durable)
            free = concurrency - len(in_flight)
            if free <= 0:
                await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
                continue
            try:
                messages = await sub.fetch(min(batch, free), timeout=1.0)
            except (NatsTimeoutError, TimeoutError):  # nothing to fetch within the wait
                continue
            except Exception as exc:  # connection blips: nats-py reconnects on its own
                log.warning("fetch from %s failed: %r", durable, exc)
                await asyncio.sleep(0.5)
                continue
            for msg in messages:
                task = asyncio.create_task(self._dispatch(msg, handler, durable, max_deliver, limiter))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
        if in_flight:
            await asyncio.wait(in_flight)
        # A pull subscription left open makes the connection's drain wait out its whole timeout.
        try:
            await sub.unsubscribe()
        except Exception as exc:
            log.debug("unsubscribe from %s failed: %s", durable, exc)

    async def _sample_pending(
        self, sub: JetStreamContext.PullSubscription, stream: str, durable: str
    ) -> None:
        """The consumer's backlog as a gauge (what a queue-based autoscaler would read)."""
        try:
            info = await sub.consumer_info()
        except Exception as exc:
            log.debug("consumer info of %s failed: %r", durable, exc)
            return
        metrics.QUEUE_PENDING.labels(stream=stream, consumer=durable).set(info.num_pending or 0)

    async def _pull_subscribe(
        self, subject: str, durable: str, stream: str, config: ConsumerConfig
    ) -> JetStreamContext.PullSubscription:
        stream_name = self.stream(stream)
        try:
            await self.js.consumer_info(stream_name, durable)
            await self.js.add_consumer(stream_name, config)  # applies changed settings
        except NotFoundError:
            await self.js.add_consumer(stream_name, config)
        except BadRequestError:
            pass
        return await self.js.pull_subscribe(self.subject(subject), durable=durable, stream=stream_name)

    async def _dispatch(
        self, msg: Msg, handler: Handler, durable: str, max_deliver: int, limiter: asyncio.Semaphore
    ) -> None:
        async with limiter:
            headers = dict(msg.headers or {})
            num_delivered = msg.metadata.num_delivered if msg.metadata else 1
            delivery = Delivery(self.logical(msg.subject), msg.data, headers, num_delivered, msg)
            token = otel_context.attach(propagate.extract(headers))
            try:
                with tracer.start_as_current_span(
                    f"{delivery.subject} process",
                    kind=trace.SpanKind.CONSUMER,
                    attributes={
                        "messaging.system": "nats",
                        "messaging.destination.name": delivery.subject,
                        "messaging.consumer.group.name": durable,
                        "messaging.message.id": delivery.event_id,
                        "messaging.delivery.attempt": num_delivered,
                    },
                ):
                    await self._handle(delivery, handler, durable, max_deliver)
            finally:
                otel_context.detach(token)

    async def _handle(self, delivery: Delivery, handler: Handler, durable: str, max_deliver: int) -> None:
        msg = delivery._msg
        if delivery.num_delivered > 1:
            metrics.REDELIVERIES.labels(consumer=durable).inc()
        try:
            await handler(delivery)
        except Permanent as exc:
            await self._dead_letter(delivery, durable, f"permanent: {exc}")
            await msg.ack()
        except Exception as exc:
            delay = (
                exc.delay if isinstance(exc, Retry) else min(30.0, 0.5 * 2 ** (delivery.num_delivered - 1))
            )
            if delivery.num_delivered >= max_deliver:
                await self._dead_letter(delivery, durable, f"gave up after {delivery.num_delivered}: {exc}")
                await msg.ack()
                return
            if not isinstance(exc, Retry):
                log.warning(
                    "handler %s failed on %s (attempt %d), retrying: %r",
                    durable,
                    delivery.subject,
                    delivery.num_delivered,
                    exc,
                )
            await msg.nak(delay=delay)
        else:
            await msg.ack()
            metrics.EVENTS_HANDLED.labels(consumer=durable, subject=delivery.subject).inc()

    async def _dead_letter(self, delivery: Delivery, durable: str, reason: str) -> None:
        log.error("dead-lettering %s from %s: %s", delivery.event_id, durable, reason)
        metrics.DEAD_LETTERS.labels(consumer=durable).inc()
        headers: dict[str, Any] = {k: v for k, v in delivery.headers.items() if k != MSG_ID_HEADER}
        headers["Atelier-Dlq-Reason"] = reason[:500]
        headers["Atelier-Dlq-Consumer"] = durable
        await self.publish(
            f"dlq.{delivery.subject}",
            delivery.data,
            msg_id=f"dlq:{durable}:{delivery.event_id}",
            headers=headers,
        )

    async def close(self) -> None:
        try:
            await self.nc.drain()
        except Exception:
            await self.nc.close()
