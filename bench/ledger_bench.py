"""Hold + capture pairs per second over gRPC against `pgbench -b simple-update`, same PostgreSQL,
same client counts, same run. Not a test: `python bench/ledger_bench.py [--seconds 8] [--write]`.

The ledger runs as its own process (`python -m services.ledger`) on a scratch database; each bench
client is one user's wallet doing hold → capture in a loop, over one shared gRPC channel per calling
workload: holds as `generation`, credits and captures as `operator` (`kit.access.ACCESS`; the ledger runs
plaintext, in development, so each channel claims its workload). pgbench runs on a scratch database
initialised with `pgbench -i`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from atelier.common.v1 import common_pb2
from atelier.ledger.v1 import ledger_pb2 as pb
from atelier.ledger.v1 import ledger_pb2_grpc
from devkit.embedded import free_port
from kit import grpc_client
from kit.access import GENERATION, OPERATOR
from kit.bus import Bus
from kit.db import drop_database, ensure_database, libpq_dsn, with_database

ROOT = Path(__file__).resolve().parent.parent
SERVER = os.environ.get("ATELIER_BENCH_DATABASE_SERVER", "postgresql://postgres@127.0.0.1:5432/postgres")
NATS = os.environ.get("ATELIER_BENCH_NATS_URL", "nats://127.0.0.1:4222")
CLIENTS = (1, 8, 32)


@dataclass(frozen=True)
class Sample:
    pairs: float  # ledger hold+capture pairs/s
    tps: float  # pgbench transactions/s
    floor: float  # pairs of health checks/s: the most any pair of calls can do here


def pgbench_binary() -> str:
    for candidate in (shutil.which("pgbench"), "/usr/lib/postgresql/15/bin/pgbench"):
        if candidate and Path(candidate).exists():
            return candidate
    raise SystemExit("pgbench not found")


def run_pgbench(dsn: str, clients: int, seconds: int) -> float:
    out = subprocess.run(
        [
            pgbench_binary(),
            "-n",
            "-b",
            "simple-update",
            "-c",
            str(clients),
            "-j",
            str(min(clients, 2)),
            "-T",
            str(seconds),
            dsn,
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    match = re.search(r"tps = ([\d.]+) \(without initial connection time\)", out)
    if match is None:
        raise SystemExit(f"cannot read pgbench output:\n{out}")
    return float(match.group(1))


async def wait_serving(
    open_channel: Callable[[], grpc.aio.Channel], process: asyncio.subprocess.Process
) -> None:
    """Until a new channel from `open_channel` connects to the ledger `process`."""
    for _ in range(200):
        if process.returncode is not None:
            raise SystemExit("the ledger process exited during startup")
        try:
            async with open_channel() as channel:
                await asyncio.wait_for(channel.channel_ready(), 0.5)
                return
        except (TimeoutError, grpc.aio.AioRpcError):
            await asyncio.sleep(0.1)
    raise SystemExit("the ledger did not start")


# One client's `n`-th pair of calls: pair(client, n).
Pair = Callable[[int, int], Awaitable[None]]


async def pairs_per_second(clients: int, seconds: float, pair: Pair) -> float:
    """`clients` concurrent loops, each awaiting `pair(client, n)` for n = 1, 2, … until the time is up."""
    deadline = time.perf_counter() + seconds
    counts = [0] * clients

    async def client(index: int) -> None:
        while time.perf_counter() < deadline:
            await pair(index, counts[index] + 1)
            counts[index] += 1

    started = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(clients)))
    return sum(counts) / (time.perf_counter() - started)


async def funded_pairs(generation: grpc.aio.Channel, operator: grpc.aio.Channel, clients: int) -> Pair:
    """Funds one wallet per client (as the operator); each pair holds 1 credit of it as generation does
    and captures it (in the product a capture is the ledger's own work, on an event; here the operator's
    direct call)."""
    holds = ledger_pb2_grpc.LedgerServiceStub(generation)
    stub = ledger_pb2_grpc.LedgerServiceStub(operator)
    run = uuid.uuid4().hex[:6]
    amount = common_pb2.Credits(milli=1000)
    users = [f"bench-{run}-{i}" for i in range(clients)]
    for user in users:
        await stub.Credit(
            pb.CreditRequest(
                transfer_id=f"fund:{user}",
                user_id=user,
                amount=common_pb2.Credits(milli=10**12),
                kind=pb.CREDIT_KIND_GRANT,
            )
        )

    async def hold_and_capture(index: int, n: int) -> None:
        hold_id = f"hold:{users[index]}:{n}"
        await holds.Hold(pb.HoldRequest(transfer_id=hold_id, user_id=users[index], amount=amount))
        await stub.Capture(pb.CaptureRequest(transfer_id=f"capture:{hold_id}", hold_id=hold_id))

    return hold_and_capture


async def ledger_pairs_per_second(
    generation: grpc.aio.Channel, operator: grpc.aio.Channel, clients: int, seconds: float
) -> float:
    return await pairs_per_second(clients, seconds, await funded_pairs(generation, operator, clients))


def health_pair(channel: grpc.aio.Channel) -> Pair:
    """The cheapest pair of calls the ledger process answers: two `grpc.health.v1.Health/Check`s,
    through the same interceptors and tracing as every call, no database."""
    stub = health_pb2_grpc.HealthStub(channel)
    request = health_pb2.HealthCheckRequest()

    async def two_checks(index: int, n: int) -> None:
        await stub.Check(request)
        await stub.Check(request)

    return two_checks


async def floor_pairs_per_second(channel: grpc.aio.Channel, clients: int, seconds: float) -> float:
    """The transport's ceiling for the same clients (`health_pair`)."""
    return await pairs_per_second(clients, seconds, health_pair(channel))


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--runs", type=int, default=3, help="runs of every point; the table shows medians")
    parser.add_argument("--write", action="store_true", help="write the table into docs/benchmarks.md")
    parser.add_argument("--replicas", type=int, default=1, help="ledger processes, called round robin")
    parser.add_argument("--clients", type=int, nargs="+", default=list(CLIENTS), help="client counts")
    args = parser.parse_args()

    run = uuid.uuid4().hex[:8]
    ledger_url = with_database(SERVER, f"bench_{run}_ledger").render_as_string(hide_password=False)
    pgbench_url = with_database(SERVER, f"bench_{run}_pgbench").render_as_string(hide_password=False)
    namespace = f"bench{run}"
    await ensure_database(ledger_url)
    await ensure_database(pgbench_url)
    init = await asyncio.create_subprocess_exec(
        pgbench_binary(),
        "-i",
        "-q",
        libpq_dsn(pgbench_url),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    if await init.wait() != 0:
        raise SystemExit("pgbench -i failed")
    ports = [free_port() for _ in range(args.replicas)]
    env = {
        **os.environ,
        "ATELIER_DATABASE_URL": ledger_url,
        "ATELIER_GRPC_HOST": "127.0.0.1",
        "ATELIER_NATS_URL": NATS,
        "ATELIER_NAMESPACE": namespace,
        "ATELIER_DB_POOL_SIZE": "40",
        "ATELIER_LOG_LEVEL": "ERROR",
    }
    servers = []
    for port in ports:  # one after the other: the first one migrates the database
        servers.append(
            await asyncio.create_subprocess_exec(
                sys.executable, "-m", "services.ledger", cwd=ROOT, env={**env, "ATELIER_GRPC_PORT": str(port)}
            )
        )
        await wait_serving(functools.partial(grpc.aio.insecure_channel, f"127.0.0.1:{port}"), servers[-1])
    samples: dict[int, list[Sample]] = {clients: [] for clients in args.clients}
    loads: list[float] = []
    # Like a client of a Kubernetes headless service: every replica's address, calls spread round robin.
    target = "ipv4:" + ",".join(f"127.0.0.1:{port}" for port in ports)
    try:
        async with (
            grpc_client.channel(target, workload=GENERATION) as generation,
            grpc_client.channel(target, workload=OPERATOR) as operator,
        ):
            await ledger_pairs_per_second(generation, operator, 4, 1.0)  # warm up pools and caches
            for attempt in range(1, args.runs + 1):
                for clients in args.clients:
                    loads.append(os.getloadavg()[0])
                    pairs = await ledger_pairs_per_second(generation, operator, clients, args.seconds)
                    tps = await asyncio.to_thread(run_pgbench, libpq_dsn(pgbench_url), clients, args.seconds)
                    floor = await floor_pairs_per_second(generation, clients, args.seconds)
                    samples[clients].append(Sample(pairs, tps, floor))
                    print(
                        f"run {attempt} {clients:>3} clients: ledger {pairs:8.1f} pairs/s   "
                        f"pgbench {tps:8.1f} tps   ratio {pairs / tps:.3f}   gRPC floor {floor:8.1f} "
                        f"pairs/s ({floor / tps:.2f} of pgbench)   load {loads[-1]:.1f}"
                    )
    finally:
        for server in servers:
            server.terminate()
        for server in servers:
            await asyncio.wait_for(server.wait(), 30)
        bus = await Bus.connect(NATS, namespace=namespace, name="bench-cleanup")
        with contextlib.suppress(Exception):
            await bus.delete_streams()
        await bus.close()
        await drop_database(ledger_url)
        await drop_database(pgbench_url)

    table = [
        "| clients | ledger hold+capture pairs/s | pgbench simple-update tps | ratio (median) | range "
        "| gRPC floor pairs/s | floor / pgbench | ledger / floor |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for clients, points in samples.items():
        ratios = [p.pairs / p.tps for p in points]
        pairs = statistics.median(p.pairs for p in points)
        tps = statistics.median(p.tps for p in points)
        floor = statistics.median(p.floor for p in points)
        table.append(
            f"| {clients} | {pairs:.1f} | {tps:.1f} | {statistics.median(ratios):.3f} "
            f"| {min(ratios):.3f}–{max(ratios):.3f} | {floor:.1f} | {floor / tps:.2f} | {pairs / floor:.2f} |"
        )
    load = f"load average {min(loads):.1f}–{max(loads):.1f}"
    print("\n".join(table))
    print(load)
    if args.write:
        write_docs(table, args.seconds, args.runs, load)


def write_section(name: str, lines: list[str]) -> None:
    """Put `lines` into docs/benchmarks.md between `<!-- {name}:start -->` and `<!-- {name}:end -->`
    (appended, markers and all, the first time)."""
    path = ROOT / "docs" / "benchmarks.md"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    section = "\n".join([start, *lines, end])
    if start in text and end in text:
        text = text[: text.index(start)] + section + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    path.write_text(text)


def write_docs(table: list[str], seconds: int, runs: int, load: str) -> None:
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    write_section(
        "ledger-bench",
        [
            "## Ledger: hold + capture over gRPC vs `pgbench -b simple-update`",
            "",
            f"`python bench/ledger_bench.py --runs {runs} --write`: {seconds} s per point, {runs} runs of",
            "each (ledger, pgbench, gRPC floor, in turn), medians; same PostgreSQL server and settings,",
            f"same client counts ({when}, {os.cpu_count()} cores, {load}). One pair = two gRPC calls",
            "(hold, then capture): two transfers, a hold resolution, two wallet updates, the system",
            "shard upserts and two `balances.changed` events, durably committed; one pgbench",
            "transaction = one update, a select and an insert. The gRPC floor is the same clients calling",
            "`grpc.health.v1.Health/Check` twice per pair on the same ledger process (same interceptors",
            "and tracing, no database): what any pair of calls can reach here.",
            "",
            *table,
        ],
    )


if __name__ == "__main__":
    asyncio.run(main())
