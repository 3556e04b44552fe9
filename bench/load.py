"""A small closed-loop HTTP load generator (the same tool drives the floor and the product).

`concurrency` clients each send requests back to back for `duration` seconds; latencies are recorded
per request. Bounded in count and time, loopback only.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import httpx

Request = Callable[[httpx.AsyncClient, int], Awaitable[httpx.Response]]


@dataclass
class LoadResult:
    label: str
    concurrency: int
    seconds: float
    latencies: list[float] = field(default_factory=list)
    errors: int = 0

    @property
    def throughput(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0

    def percentile(self, p: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]

    def row(self) -> str:
        return (
            f"{self.label:<28} c={self.concurrency:<3} {self.throughput:9.1f} req/s  "
            f"p50 {self.percentile(50) * 1000:7.1f} ms  p99 {self.percentile(99) * 1000:7.1f} ms  "
            f"errors {self.errors}"
        )


async def run_load(
    label: str,
    base_url: str,
    request: Request,
    *,
    concurrency: int,
    duration: float,
    max_requests: int = 200_000,
    headers: dict[str, str] | None = None,
) -> LoadResult:
    result = LoadResult(label, concurrency, duration)
    deadline = time.perf_counter() + duration
    counter = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=30, headers=headers) as client:

        async def worker() -> None:
            nonlocal counter
            while time.perf_counter() < deadline and counter < max_requests:
                counter += 1
                started = time.perf_counter()
                try:
                    response = await request(client, counter)
                    ok = response.status_code < 400
                except httpx.HTTPError:
                    ok = False
                if ok:
                    result.latencies.append(time.perf_counter() - started)
                else:
                    result.errors += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        result.seconds = time.perf_counter() - started
    return result


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")
