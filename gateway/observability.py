"""HTTP request metrics per route template (never per raw path: ids would explode the label set)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response
from prometheus_client import Counter, Histogram

from kit.telemetry import current_trace_id

HTTP_REQUESTS = Counter(
    "atelier_http_requests_total", "HTTP requests answered", ["method", "route", "status"]
)
HTTP_LATENCY = Histogram(
    "atelier_http_latency_seconds",
    "HTTP request latency",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


def _route_template(request: Request) -> str:
    route = request.scope.get("route")  # set by the router once it matched
    return str(getattr(route, "path", "unmatched"))


def install(app: FastAPI) -> None:
    @app.middleware("http")
    async def record(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        started = time.perf_counter()
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
            return response
        finally:
            route = _route_template(request)
            HTTP_REQUESTS.labels(request.method, route, str(status)).inc()
            trace_id = current_trace_id()
            HTTP_LATENCY.labels(request.method, route).observe(
                time.perf_counter() - started, exemplar={"trace_id": trace_id} if trace_id else None
            )
