"""Balance and usage read latency for a user with 1k transfers vs one with 1M (does cost grow with history?).

`python -m bench.ledger_history_bench [--large 1000000] [--seconds 15]`

Starts the whole stack as processes (tests/e2e/stack.py), registers two verified users through the
API, then seeds each one's history with SQL straight into this run's own (scratch) ledger database,
consistent with services/ledger/models.py: one admin grant, then pairs of an image-task hold and its
capture (hold status posted, capture linked to it, metadata model/kind as generation writes them),
spread over the last 29 days (inside `/v1/usage`'s default 30-day window), with the wallet's and the
sharded system accounts' running totals moved by the same sums and the captures rolled up in
`usage_hourly` (as the ledger does in each capture's transaction). `services.ledger reconcile` must pass
on the seeded data. Then reads, one request at a time through the gateway:
`GET /v1/billing/balance`, `GET /v1/usage?group_by=day`, `GET /v1/usage?group_by=model` (default
window: 30 days) and `GET /v1/usage?group_by=day&from=<24 h ago>` for each user, and prints p50/p99
and the large/small ratio. Loopback only; each point is bounded in time (`--seconds`).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import tempfile
import time
import uuid
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psycopg
from google.protobuf.timestamp_pb2 import Timestamp

from atelier.ledger.v1 import ledger_pb2, ledger_pb2_grpc
from bench.submit_bench import register_verified
from devkit.clients import StackCaller
from kit.access import GATEWAY
from kit.db import libpq_dsn
from kit.identity import Identity
from tests.e2e.stack import Stack
from tests.infra import start_infra

PRICE = 500  # milli-credits: one 0.5-credit image
LEFT_OVER = 1_000_000  # 1000 credits stay available
MODELS = ["gpt-image-1.5-all", "doubao-seedream-5-0", "google-flow-imagen", "grok-imagine", "nano-banana"]
SYSTEM_SHARDS = 16  # services/ledger/repository/accounts.py spreads system accounts over 16 shard rows


def shard(account: str, user_id: str) -> str:
    return f"{account}#{zlib.crc32(user_id.encode()) % SYSTEM_SHARDS:02d}"


SEED = """
INSERT INTO transfers (id, kind, debit_account, credit_account, amount, status, user_id, reference_type,
                       reference_id, metadata, expires_at, resolved_at, request_hash, created_at)
SELECT 'hold:tsk_seed_' || %(tag)s || '_' || g || ':1', 'hold', 'user:' || %(user)s, 'system:revenue',
       %(price)s, 'posted', %(user)s, 'task', 'tsk_seed_' || %(tag)s || '_' || g,
       jsonb_build_object('model', (%(models)s::text[])[1 + g %% 5], 'kind', 'image'),
       at + interval '2 hours', at + interval '2 seconds', 'seed', at
FROM generate_series(1, %(pairs)s) AS g,
     LATERAL (SELECT now() - interval '29 days' + interval '29 days' * g / %(pairs)s AS at) AS t;
INSERT INTO transfers (id, kind, debit_account, credit_account, amount, status, user_id, reference_type,
                       reference_id, metadata, linked_transfer_id, request_hash, created_at)
SELECT 'capture:' || h.id, 'capture', h.debit_account, h.credit_account, h.amount, 'posted', h.user_id,
       h.reference_type, h.reference_id, h.metadata, h.id, 'seed', h.resolved_at
FROM transfers AS h
WHERE h.user_id = %(user)s AND h.kind = 'hold' AND h.id LIKE 'hold:tsk_seed_%%';
INSERT INTO usage_hourly AS u (user_id, hour, model, kind, spend_milli, charges)
SELECT c.user_id, date_trunc('hour', c.created_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC',
       coalesce(c.metadata ->> 'model', ''), coalesce(c.metadata ->> 'kind', ''), sum(c.amount), count(*)
FROM transfers AS c
WHERE c.user_id = %(user)s AND c.kind = 'capture' AND c.id LIKE 'capture:hold:tsk_seed_' || %(tag)s || '_%%'
GROUP BY 1, 2, 3, 4
ON CONFLICT (user_id, hour, model, kind) DO UPDATE
SET spend_milli = u.spend_milli + excluded.spend_milli, charges = u.charges + excluded.charges;
INSERT INTO transfers (id, kind, debit_account, credit_account, amount, status, user_id, reference_type,
                       reference_id, reason, actor_id, request_hash, created_at)
VALUES ('grant:seed:' || %(tag)s, 'grant', 'system:adjustments', 'user:' || %(user)s, %(granted)s, 'posted',
        %(user)s, 'grant', 'seed', 'benchmark history', 'bench', 'seed', now() - interval '30 days');
INSERT INTO accounts (id, kind, user_id, posted_credits, posted_debits, version)
VALUES ('user:' || %(user)s, 'wallet', %(user)s, %(granted)s, %(spent)s, 1)
ON CONFLICT (id) DO UPDATE SET posted_credits = accounts.posted_credits + excluded.posted_credits,
    posted_debits = accounts.posted_debits + excluded.posted_debits, version = accounts.version + 1;
INSERT INTO accounts (id, kind, posted_credits, posted_debits, version)
VALUES (%(revenue)s, 'system', %(spent)s, 0, 1), (%(adjustments)s, 'system', 0, %(granted)s, 1)
ON CONFLICT (id) DO UPDATE SET posted_credits = accounts.posted_credits + excluded.posted_credits,
    posted_debits = accounts.posted_debits + excluded.posted_debits, version = accounts.version + 1;
"""


def seed(ledger_url: str, user_id: str, transfers: int) -> float:
    """`transfers` transfers for `user_id` (a grant, then holds and their captures); seconds taken."""
    pairs = (transfers - 1) // 2
    spent = pairs * PRICE
    started = time.monotonic()
    with psycopg.connect(libpq_dsn(ledger_url)) as conn:
        conn.execute("SET synchronous_commit = off")
        params = {
            "tag": uuid.uuid4().hex[:6],
            "user": user_id,
            "price": PRICE,
            "pairs": pairs,
            "models": MODELS,
            "granted": spent + LEFT_OVER,
            "spent": spent,
            "revenue": shard("system:revenue", user_id),
            "adjustments": shard("system:adjustments", user_id),
        }
        for statement in SEED.split(";"):
            if statement.strip():
                conn.execute(statement, params)
        conn.commit()
    with psycopg.connect(libpq_dsn(ledger_url), autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE transfers")
        conn.execute("VACUUM ANALYZE usage_hourly")
    return time.monotonic() - started


@dataclass
class Point:
    latencies: list[float] = field(default_factory=list)
    failures: dict[int, int] = field(default_factory=dict)
    failed_after: list[float] = field(default_factory=list)

    def pct(self, p: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


async def idle(client: httpx.AsyncClient, patience: float = 180) -> None:
    """Waits until the ledger answers a balance read quickly again: a read the gateway gave up on
    keeps the ledger busy, and the next point must not pay for it."""
    deadline = time.perf_counter() + patience
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        reply = await client.get("/v1/billing/balance")
        if reply.status_code == 200 and time.perf_counter() - started < 0.5:
            return
        await asyncio.sleep(1)


async def measure(
    base_url: str, token: str, probe_token: str, path: str, seconds: float, max_requests: int = 500
) -> Point:
    """Sequential requests for up to `seconds` (at least 3, at most 2 failures); latency of each."""
    point = Point()
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        httpx.AsyncClient(base_url=base_url, headers=headers, timeout=120) as client,
        httpx.AsyncClient(
            base_url=base_url, headers={"Authorization": f"Bearer {probe_token}"}, timeout=120
        ) as probe,
    ):
        await idle(probe)
        deadline = time.perf_counter() + seconds
        count = 0
        while count < max_requests and (count < 3 or time.perf_counter() < deadline):
            count += 1
            started = time.perf_counter()
            reply = await client.get(path)
            if reply.status_code == 200:
                point.latencies.append(time.perf_counter() - started)
            else:
                point.failures[reply.status_code] = point.failures.get(reply.status_code, 0) + 1
                point.failed_after.append(time.perf_counter() - started)
                if sum(point.failures.values()) >= 2:
                    break
                await idle(probe)
    return point


@dataclass
class Direct:
    seconds: float
    buckets: int
    probes: list[float]
    probe_failures: int


async def direct_usage(caller: StackCaller, user_id: str, base_url: str, probe_token: str) -> Direct:
    """GetUsage straight on the ledger with a long deadline (its real cost), while another user's
    balance is read through the gateway every 0.2 s (what that cost does to everyone else). The call is
    the gateway's, with the stack's certificates and a user token for `user_id` (the grant is USER_OWN)."""
    end = datetime.now(UTC) + timedelta(seconds=1)
    start, stop = Timestamp(), Timestamp()
    start.FromDatetime(end - timedelta(days=30))
    stop.FromDatetime(end)
    request = ledger_pb2.GetUsageRequest(
        user_id=user_id, from_time=start, to_time=stop, group_by=ledger_pb2.USAGE_GROUP_BY_DAY
    )
    probes: list[float] = []
    failures = 0
    done = asyncio.Event()

    async def prober() -> None:
        nonlocal failures
        async with httpx.AsyncClient(
            base_url=base_url, headers={"Authorization": f"Bearer {probe_token}"}, timeout=120
        ) as client:
            while not done.is_set():
                started = time.perf_counter()
                reply = await client.get("/v1/billing/balance")
                probes.append(time.perf_counter() - started)
                failures += reply.status_code != 200
                await asyncio.sleep(0.2)

    async with caller.channel("ledger", workload=GATEWAY) as channel:
        stub = ledger_pb2_grpc.LedgerServiceStub(channel)
        task = asyncio.create_task(prober())
        await asyncio.sleep(1)
        started = time.perf_counter()
        reply = await stub.GetUsage(request, metadata=caller.user(Identity(user_id)), timeout=600)
        took = time.perf_counter() - started
        done.set()
        await task
    return Direct(took, len(reply.buckets), probes, failures)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--small", type=int, default=1_000, help="transfers of the small history")
    parser.add_argument("--large", type=int, default=1_000_000, help="transfers of the large history")
    parser.add_argument("--seconds", type=float, default=15.0, help="seconds per (endpoint, size) point")
    args = parser.parse_args()

    infra = start_infra()
    stack = Stack(Path(tempfile.mkdtemp(prefix="atelier-bench-")), infra)
    stack.env["ATELIER_LOG_LEVEL"] = "WARNING"
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    day_ago = (datetime.now(UTC) - timedelta(days=1)).isoformat().replace("+00:00", "Z")
    paths = {
        "balance": "/v1/billing/balance",
        "usage by day (30 d)": "/v1/usage?group_by=day",
        "usage by model (30 d)": "/v1/usage?group_by=model",
        "usage by day (last 24 h)": f"/v1/usage?group_by=day&from={day_ago}",
    }
    results: dict[tuple[str, int], Point] = {}
    try:
        stack.start()
        users: dict[int, tuple[str, str]] = {}
        for size in (args.small, args.large):
            token = register_verified(stack, f"history-{uuid.uuid4().hex[:8]}@example.com")
            with stack.client(token) as http:
                user_id = http.get("/v1/billing/balance").json()["user_id"]
            took = seed(stack.database("ledger"), user_id, size)
            users[size] = (token, user_id)
            print(f"seeded {size:,} transfers for {user_id} in {took:.1f} s")
        reconcile = stack.reconcile()
        print(f"reconcile: exit {reconcile.returncode}: {reconcile.stdout.strip()[-200:]}")
        if reconcile.returncode != 0:
            raise SystemExit(reconcile.stdout + reconcile.stderr)
        probe_token = register_verified(stack, f"probe-{uuid.uuid4().hex[:8]}@example.com")
        for name, path in paths.items():
            for size, (token, _) in users.items():
                results[(name, size)] = asyncio.run(
                    measure(stack.base_url, token, probe_token, path, args.seconds)
                )
                point = results[(name, size)]
                print(
                    f"{name:<26} {size:>9,} transfers: n={len(point.latencies)} "
                    f"p50 {point.pct(50) * 1000:.1f} ms p99 {point.pct(99) * 1000:.1f} ms "
                    f"failures {point.failures} (after {statistics.median(point.failed_after or [0]):.1f} s)"
                )
        caller = StackCaller.from_stack_file(stack.home / "stack.json")
        direct = asyncio.run(direct_usage(caller, users[args.large][1], stack.base_url, probe_token))
        load_avg = os.getloadavg()
    finally:
        stack.stop()
        shutil.rmtree(stack.home, ignore_errors=True)
        infra.stop()

    print(f"\nload average at the end: {' '.join(f'{x:.2f}' for x in load_avg)}")
    small, large = args.small, args.large
    print(
        f"\n| read | {small:,} transfers p50 / p99 ms | {large:,} transfers p50 / p99 ms "
        "| p50 ratio | failures |"
    )
    print("|---|---:|---:|---:|---|")
    for name in paths:
        a, b = results[(name, small)], results[(name, large)]
        failures = "; ".join(
            f"{size:,}: {count}× HTTP {status} after ~{statistics.median(point.failed_after):.1f} s"
            for size, point in ((small, a), (large, b))
            for status, count in point.failures.items()
        )
        print(
            f"| {name} | {a.pct(50) * 1000:.1f} / {a.pct(99) * 1000:.1f} "
            f"| {b.pct(50) * 1000:.1f} / {b.pct(99) * 1000:.1f} | {b.pct(50) / a.pct(50):.1f}× "
            f"| {failures or 'none'} |"
        )
    print(
        f"\nGetUsage(group_by=day, 30 d) straight on the ledger for {large:,} transfers: "
        f"{direct.seconds:.1f} s ({direct.buckets} buckets); meanwhile another user's "
        f"GET /v1/billing/balance: {len(direct.probes)} reads, max {max(direct.probes, default=0):.1f} s, "
        f"{direct.probe_failures} failed"
    )


if __name__ == "__main__":
    main()
