"""OpenTelemetry: one tracer provider per process, W3C trace context, instrumented gRPC, SQL and httpx."""

from __future__ import annotations

import logging

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased
from sqlalchemy.ext.asyncio import AsyncEngine

from kit.settings import Settings

log = logging.getLogger(__name__)

_configured = False
memory_exporter: InMemorySpanExporter | None = None
_sql_provider: TracerProvider | None = None


def setup(service: str, settings: Settings) -> None:
    """Install the tracer provider and the gRPC/httpx instrumentations (idempotent)."""
    global _configured, memory_exporter
    if _configured:
        return
    _configured = True
    resource = Resource.create(
        {
            "service.name": service,
            "service.namespace": "atelier",
            "service.version": settings.version,
            "deployment.environment.name": settings.environment,
        }
    )
    provider = TracerProvider(resource=resource)
    # SQL is traced only inside a trace (a request, a message): the polling of background loops
    # (outbox relay, sweepers) would otherwise make a root trace of every idle query.
    sql_provider = TracerProvider(resource=resource, sampler=ParentBased(root=ALWAYS_OFF))
    processor: SpanProcessor | None = None
    if settings.otel_exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        processor = BatchSpanProcessor(OTLPSpanExporter(endpoint=settings.otel_endpoint))
    elif settings.otel_exporter == "console":
        processor = BatchSpanProcessor(ConsoleSpanExporter())
    elif settings.otel_exporter == "memory":
        memory_exporter = InMemorySpanExporter()
        processor = SimpleSpanProcessor(memory_exporter)
    if processor is not None:
        provider.add_span_processor(processor)
        sql_provider.add_span_processor(processor)
    trace.set_tracer_provider(provider)
    global _sql_provider
    _sql_provider = sql_provider

    from opentelemetry.instrumentation.grpc import GrpcAioInstrumentorClient, GrpcAioInstrumentorServer
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    GrpcAioInstrumentorServer().instrument()  # type: ignore[no-untyped-call]
    GrpcAioInstrumentorClient().instrument()  # type: ignore[no-untyped-call]
    HTTPXClientInstrumentor().instrument()


def instrument_engine(engine: AsyncEngine) -> None:
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

    SQLAlchemyInstrumentor().instrument(
        engine=engine.sync_engine, enable_commenter=False, tracer_provider=_sql_provider
    )


def current_trace_id() -> str:
    """The hex trace id of the active span, or "" outside any trace."""
    ctx = trace.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else ""
