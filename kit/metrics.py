"""Prometheus metrics shared by every process; domain metrics live beside their service."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, start_http_server

RPC_REQUESTS = Counter("atelier_rpc_requests_total", "gRPC calls served", ["service", "method", "code"])
RPC_REFUSALS = Counter(
    "atelier_rpc_refusals_total",
    "gRPC calls refused before their handler ran (kit.access): no grant, or a bad user token",
    ["service", "method", "workload", "code"],
)
RPC_LATENCY = Histogram(
    "atelier_rpc_latency_seconds",
    "gRPC call latency",
    ["service", "method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
OUTBOX_PUBLISHED = Counter("atelier_outbox_published_total", "Outbox rows published to NATS", ["service"])
OUTBOX_LAG = Histogram(
    "atelier_outbox_lag_seconds",
    "Time from an outbox row's commit to its publish",
    ["service"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
)
OUTBOX_PENDING = Gauge("atelier_outbox_pending", "Outbox rows waiting to be published", ["service"])
EVENTS_HANDLED = Counter("atelier_events_handled_total", "Events handled and acked", ["consumer", "subject"])
REDELIVERIES = Counter("atelier_event_redeliveries_total", "Messages delivered more than once", ["consumer"])
QUEUE_PENDING = Gauge(
    "atelier_queue_pending",
    "Messages a durable consumer has not been delivered yet (JetStream num_pending, sampled)",
    ["stream", "consumer"],
)
DEAD_LETTERS = Counter("atelier_dead_letters_total", "Messages sent to the dead-letter subject", ["consumer"])


def serve_metrics(port: int) -> None:
    """Expose /metrics on `port` (0 disables it)."""
    if port:
        start_http_server(port)
