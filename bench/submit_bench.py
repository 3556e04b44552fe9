"""Task submissions through the gateway beside the floor, and completion-to-settlement lag, in one run.

`python -m bench.submit_bench [--duration 10] [--concurrency 4 16] [--shapes single cluster]`

Starts the whole stack as processes (tests/e2e/stack.py, the launcher of `make run`) with the local
provider at zero delay and no failures, registers, verifies and recharges users through the API
(the sandbox payer), then for each concurrency runs the same closed-loop load tool (bench/load.py)
against:
- the floor: bench/floor_server.py, one PostgreSQL transaction per request, on the same server;
- the product: `POST /v1/tasks` (an image task on an enabled model, its own Idempotency-Key each).

With `--shapes single cluster` it does all of that twice in one run, once on the one-process-per-service
shape of `make run` and once on the cluster shape of `atelier run --cluster` (three NATS nodes, two
replicas of everything, submissions spread over both gateways), and prints the cluster's figures as ratios
of the single shape's.

Then waits until every submitted task is settled and measures completion-to-settlement lag from the
timestamps the system records: the task's `finished_at` (generation database) to the `created_at`
of the ledger's capture transfer linked to the task's hold (ledger database). Loopback only;
bounded in time (about two minutes at the defaults).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import httpx
import psycopg

from bench.load import LoadResult, run_load
from devkit.embedded import free_port
from kit.db import libpq_dsn
from tests.e2e.stack import ROOT, Stack
from tests.infra import Infra, start_infra

PASSWORD = "a long enough passphrase 2026"
IMAGE_TASK = {
    "kind": "image",
    "model": "gpt-image-1.5-all",
    "prompt": "a ceramic mug on a sunlit desk",
    "ratio": "1:1",
    "resolution": "1024",
}
TERMINAL = ("succeeded", "failed", "canceled")


# -- users -------------------------------------------------------------------------------------------


def register_verified(stack: Stack, email: str) -> str:
    with stack.client() as http:
        reply = http.post("/v1/auth/register", json={"email": email, "password": PASSWORD, "locale": "en"})
        reply.raise_for_status()
        token = stack.verification_token(email)
        http.post("/v1/auth/verify-email", json={"token": token}).raise_for_status()
        reply = http.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
        reply.raise_for_status()
        access: str = reply.json()["access_token"]
        return access


def recharge(stack: Stack, token: str, amount: str) -> None:
    """A recharge order paid by the sandbox payer (a signed callback); waits until it is credited."""
    with stack.client(token) as http:
        order = http.post(
            "/v1/billing/recharges",
            json={"method": "alipay", "amount": amount},
            headers={"Idempotency-Key": f"bench-{uuid.uuid4()}"},
        )
        order.raise_for_status()
        order_id = order.json()["id"]
        http.post(f"/sandbox/pay/{order_id}").raise_for_status()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if http.get(f"/v1/billing/recharges/{order_id}").json()["status"] == "completed":
                return
            time.sleep(0.2)
    raise RuntimeError(f"recharge {order_id} was not completed")


# -- the floor ---------------------------------------------------------------------------------------


@dataclass
class Floor:
    process: subprocess.Popen[bytes]
    base_url: str
    database: str

    @classmethod
    def start(cls, infra: Infra) -> Floor:
        database = f"bench_floor_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(libpq_dsn(infra.database_server), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{database}"')
        url = infra.database_server.rsplit("/", 1)[0] + f"/{database}"
        port = free_port()
        process = subprocess.Popen(
            [sys.executable, "-m", "bench.floor_server", str(port), url],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
        )
        floor = cls(process, f"http://127.0.0.1:{port}", database)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx.post(f"{floor.base_url}/tasks", timeout=2).raise_for_status()
                return floor
            except httpx.HTTPError:
                time.sleep(0.3)
        floor.stop(infra)
        raise RuntimeError("the floor server did not start")

    def stop(self, infra: Infra) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        with psycopg.connect(libpq_dsn(infra.database_server), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')


# -- settlement lag ----------------------------------------------------------------------------------


def settlement(stack: Stack, timeout: float) -> tuple[list[float], dict[str, int], float]:
    """Waits until every task is terminal and every succeeded one is captured; (lags in seconds,
    tasks by status, seconds waited)."""
    started = time.monotonic()
    with (
        psycopg.connect(libpq_dsn(stack.database("generation"))) as generation,
        psycopg.connect(libpq_dsn(stack.database("ledger"))) as ledger,
    ):
        generation.autocommit = ledger.autocommit = True
        while True:
            tasks: list[tuple[str, str, str | None, datetime | None]] = generation.execute(
                "SELECT id, status, hold_id, finished_at FROM tasks"
            ).fetchall()
            captures: dict[str, datetime] = dict(
                ledger.execute(
                    "SELECT linked_transfer_id, created_at FROM transfers WHERE kind = 'capture'"
                ).fetchall()
            )
            pending = [
                t for t in tasks if t[1] not in TERMINAL or (t[1] == "succeeded" and t[2] not in captures)
            ]
            if not pending or time.monotonic() - started > timeout:
                break
            time.sleep(1)
    statuses: dict[str, int] = {}
    lags: list[float] = []
    for _, status, hold, finished in tasks:
        statuses[status] = statuses.get(status, 0) + 1
        if status == "succeeded" and hold in captures and finished is not None:
            lags.append((captures[hold] - finished).total_seconds())
    if pending:
        statuses["unsettled"] = len(pending)
    return lags, statuses, time.monotonic() - started


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


# -- the run -----------------------------------------------------------------------------------------


async def load_pair(
    stack: Stack, floor: Floor, tokens: list[str], concurrency: int, duration: float
) -> tuple[LoadResult, LoadResult]:
    auth = itertools.cycle([{"Authorization": f"Bearer {t}"} for t in tokens])

    async def floor_request(client: httpx.AsyncClient, _: int) -> httpx.Response:
        return await client.post("/tasks")

    gateways = itertools.cycle(stack.gateways)  # one, or both of the cluster's, in turn

    async def submit(client: httpx.AsyncClient, _: int) -> httpx.Response:
        headers = next(auth) | {"Idempotency-Key": f"bench-{uuid.uuid4()}"}
        reply = await client.post(f"{next(gateways)}/v1/tasks", json=IMAGE_TASK, headers=headers)
        if reply.status_code != 201:
            print(f"  submit → {reply.status_code} {reply.text[:200]}", file=sys.stderr)
        return reply

    floor_result = await run_load(
        "floor: 1 PG txn/request", floor.base_url, floor_request, concurrency=concurrency, duration=duration
    )
    product = await run_load(
        "POST /v1/tasks (image)", stack.base_url, submit, concurrency=concurrency, duration=duration
    )
    return floor_result, product


@dataclass
class ShapeResult:
    shape: str
    rows: list[tuple[LoadResult, LoadResult]]
    lags: list[float]
    statuses: dict[str, int]
    waited: float
    load_seconds: float
    reconcile: int


def run_shape(infra: Infra, shape: str, args: argparse.Namespace) -> ShapeResult:
    home = Path(tempfile.mkdtemp(prefix=f"atelier-bench-{shape}-"))
    stack = Stack(home, infra, cluster=shape == "cluster")
    stack.env.update(
        ATELIER_LOCAL_DELAY_SECONDS="0",
        ATELIER_LOCAL_FAILURE_FRACTION="0",
        ATELIER_LOG_LEVEL="WARNING",
        # The same pools on both shapes, small enough that the cluster's twelve processes and the floor
        # fit a stock PostgreSQL's 100 connections (the default 5 + 10 per process ran out at 16 clients).
        ATELIER_DB_POOL_SIZE="2",
        ATELIER_DB_MAX_OVERFLOW="3",
    )
    floor: Floor | None = None
    try:
        stack.start(timeout=240)
        floor = Floor.start(infra)
        tokens = []
        for _ in range(args.users):
            token = register_verified(stack, f"bench-{uuid.uuid4().hex[:8]}@example.com")
            recharge(stack, token, "3000")  # 3300 credits: 6600 image tasks at 0.5
            tokens.append(token)
        print(f"{shape} stack ready ({home}); {len(tokens)} users recharged")
        rows: list[tuple[LoadResult, LoadResult]] = []
        load_started = time.monotonic()
        for concurrency in args.concurrency:
            pair = asyncio.run(load_pair(stack, floor, tokens, concurrency, args.duration))
            rows.append(pair)
            print(pair[0].row())
            print(pair[1].row())
        load_seconds = time.monotonic() - load_started
        lags, statuses, waited = settlement(stack, args.settle_timeout)
        reconcile = stack.reconcile().returncode
    finally:
        if floor is not None:
            floor.stop(infra)
        stack.stop()
        shutil.rmtree(stack.home, ignore_errors=True)
    return ShapeResult(shape, rows, lags, statuses, waited, load_seconds, reconcile)


def report(result: ShapeResult) -> None:
    print(f"\n### {result.shape}")
    print(
        "\n| concurrency | floor req/s | submit req/s | ratio | floor p50 / p99 ms | submit p50 / p99 ms "
        "| p99 ratio | submit errors |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for floor_result, product in result.rows:
        print(
            f"| {product.concurrency} | {floor_result.throughput:.1f} | {product.throughput:.1f} "
            f"| {product.throughput / floor_result.throughput:.3f} "
            f"| {floor_result.percentile(50) * 1000:.1f} / {floor_result.percentile(99) * 1000:.1f} "
            f"| {product.percentile(50) * 1000:.1f} / {product.percentile(99) * 1000:.1f} "
            f"| {product.percentile(99) / floor_result.percentile(99):.1f}× | {product.errors} |"
        )
    lags = result.lags
    print(
        f"\nsettlement: {len(lags)} captured tasks, statuses {result.statuses}; the backlog drained "
        f"{result.waited:.0f} s after the {result.load_seconds:.0f} s of load"
    )
    print(
        f"completion-to-settlement lag (task finished_at → capture created_at): "
        f"p50 {pct(lags, 50) * 1000:.0f} ms, p99 {pct(lags, 99) * 1000:.0f} ms, "
        f"max {max(lags, default=float('nan')) * 1000:.0f} ms"
    )
    print(f"reconcile: exit {result.reconcile}")


def compare(single: ShapeResult, cluster: ShapeResult) -> None:
    print("\n### cluster ÷ single, same run")
    print(
        "\n| concurrency | single submit/s | cluster submit/s | ratio "
        "| single p50 / p99 ms | cluster p50 / p99 ms |"
    )
    print("|---:|---:|---:|---:|---:|---:|")
    for (_, one), (_, many) in zip(single.rows, cluster.rows, strict=True):
        print(
            f"| {one.concurrency} | {one.throughput:.1f} | {many.throughput:.1f} "
            f"| {many.throughput / one.throughput:.2f} "
            f"| {one.percentile(50) * 1000:.0f} / {one.percentile(99) * 1000:.0f} "
            f"| {many.percentile(50) * 1000:.0f} / {many.percentile(99) * 1000:.0f} |"
        )
    for result in (single, cluster):
        print(
            f"settlement lag p50 / p99, {result.shape}: "
            f"{pct(result.lags, 50) * 1000:.0f} / {pct(result.lags, 99) * 1000:.0f} ms"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per load point")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[4, 16])
    parser.add_argument("--users", type=int, default=4)
    parser.add_argument("--settle-timeout", type=float, default=120.0)
    parser.add_argument("--shapes", nargs="+", choices=["single", "cluster"], default=["single"])
    args = parser.parse_args()

    infra = start_infra()
    print(f"load average before: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")
    try:
        results = {shape: run_shape(infra, shape, args) for shape in args.shapes}
    finally:
        infra.stop()
    for result in results.values():
        report(result)
    if {"single", "cluster"} <= set(results):
        compare(results["single"], results["cluster"])


if __name__ == "__main__":
    main()
