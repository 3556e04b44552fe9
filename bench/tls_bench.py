"""The cost of mutual TLS on the ledger's gRPC calls: the same ledger plaintext and with mTLS, in one run.
Not a test: `python -m bench.tls_bench [--seconds 5] [--clients 1 8] [--runs 2] [--write]`.

Two ledger processes (`python -m services.ledger`), each on its own scratch database and NATS namespace:
one plaintext (development: a caller's workload is its header claim) and one with ATELIER_GRPC_TLS_DIR and
ATELIER_USER_TOKEN_PUBLIC_KEYS_FILE from a scratch PKI made by `devkit.pki`. The same client code drives
both (`kit.grpc_client` channels; holds as `generation`, credits and captures as `operator`) with the
same client counts for the same seconds, the two taking turns at going first, run after run:
(a) hold + capture pairs/s (`bench.ledger_bench.funded_pairs`);
(b) the floor: pairs of `grpc.health.v1.Health/Check`/s, no database;
(c) a new connection: open a channel and complete its first health check, one after another, median;
(d) the user token (`kit.user_tokens`): mint and verify one, in this process (timeit).
For (a)–(c) it also reports CPU milliseconds per operation of this (client) process (`time.process_time`)
and of the ledger being driven (psutil: user + system time of all its threads, in 10 ms clock ticks, so
±0.2 ms per connection over 50 connections), and every figure as mTLS ÷ plaintext.
The calls carry no user token (generation's hold may come without one); (d) is what one adds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import os
import shutil
import statistics
import sys
import tempfile
import time
import timeit
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import psutil
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench.ledger_bench import (
    NATS,
    ROOT,
    SERVER,
    Pair,
    funded_pairs,
    health_pair,
    pairs_per_second,
    wait_serving,
    write_section,
)
from devkit.clients import StackCaller
from devkit.embedded import free_port
from devkit.pki import issue_all
from kit import grpc_client
from kit.access import GENERATION, LEDGER, OPERATOR
from kit.bus import Bus
from kit.db import drop_database, ensure_database, with_database
from kit.identity import Identity
from kit.user_tokens import UserTokenSigner, UserTokenVerifier

CLIENTS = (1, 8)
PLAIN, MTLS = "plaintext", "mTLS"
TLS_DIR, PUBLIC_KEYS = "ATELIER_GRPC_TLS_DIR", "ATELIER_USER_TOKEN_PUBLIC_KEYS_FILE"
MEASURES = {
    "pairs": "hold + capture, pairs/s",
    "floor": "health checks, pairs/s",
    "connect": "new connection + first call, ms",
}


@dataclass
class Ledger:
    """One ledger process; `caller` is None for the plaintext one."""

    mode: str
    url: str
    namespace: str
    port: int
    caller: StackCaller | None
    process: asyncio.subprocess.Process | None = None

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def channel(self, workload: str) -> grpc.aio.Channel:
        if self.caller is None:
            return grpc_client.channel(self.target, workload=workload)
        return self.caller.channel(LEDGER, workload=workload)

    def cpu(self) -> float:
        assert self.process is not None
        times = psutil.Process(self.process.pid).cpu_times()
        return float(times.user + times.system)

    async def start(self, env: dict[str, str]) -> None:
        await ensure_database(self.url)
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "services.ledger",
            cwd=ROOT,
            env={
                **env,
                "ATELIER_DATABASE_URL": self.url,
                "ATELIER_NAMESPACE": self.namespace,
                "ATELIER_GRPC_PORT": str(self.port),
            },
        )
        await wait_serving(lambda: self.channel(OPERATOR), self.process)

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            await asyncio.wait_for(self.process.wait(), 30)
        bus = await Bus.connect(NATS, namespace=self.namespace, name="bench-cleanup")
        with contextlib.suppress(Exception):
            await bus.delete_streams()
        await bus.close()
        await drop_database(self.url)


@dataclass(frozen=True)
class Point:
    value: float  # pairs/s, or ms per connection
    client_ms: float  # CPU per operation, this process
    server_ms: float  # CPU per operation, the ledger driven
    load: float  # 1-minute load average as the point started


async def measured(ledger: Ledger, work: Awaitable[tuple[float, int]]) -> Point:
    """`work` gives (value, operations done); the CPU time of both processes is read around it."""
    load = os.getloadavg()[0]
    client, server = time.process_time(), ledger.cpu()
    value, operations = await work
    per = 1000 / max(operations, 1)
    return Point(value, (time.process_time() - client) * per, (ledger.cpu() - server) * per, load)


async def throughput(clients: int, seconds: float, pair: Pair) -> tuple[float, int]:
    started = time.perf_counter()
    rate = await pairs_per_second(clients, seconds, pair)
    return rate, round(rate * (time.perf_counter() - started))


async def connections(open_channel: Callable[[], grpc.aio.Channel], count: int) -> tuple[float, int]:
    """Median milliseconds from opening a channel to the answer of its first call. Each channel is
    closed before the next opens, so each makes its own connection (with TLS, its own handshake)."""
    request = health_pb2.HealthCheckRequest()
    took = []
    for _ in range(count):
        started = time.perf_counter()
        channel = open_channel()
        await health_pb2_grpc.HealthStub(channel).Check(request)
        took.append(time.perf_counter() - started)
        await channel.close()
    return statistics.median(took) * 1000, count


def token_costs(pki: Path, number: int = 2000) -> tuple[float, float]:
    """Microseconds to mint one user token and to verify one (the best of five rounds of `number`)."""
    signer = UserTokenSigner.from_file(pki / "user-token" / "signing.pem")
    verifier = UserTokenVerifier(pki / "user-token" / "public.pem")
    identity = Identity(user_id="usr_bench", role="user", status="active")
    token = signer.mint(identity)
    mint = min(timeit.repeat(lambda: signer.mint(identity), number=number, repeat=5)) / number
    verify = min(timeit.repeat(lambda: verifier.verify(token), number=number, repeat=5)) / number
    return mint * 1e6, verify * 1e6


def turns(runs: int) -> Iterator[tuple[int, tuple[str, str]]]:
    """Run numbers and the order of the two ledgers in each: plaintext first, then mTLS first, …"""
    for run in range(1, runs + 1):
        yield run, (PLAIN, MTLS) if run % 2 else (MTLS, PLAIN)


Samples = dict[tuple[str, int, str], list[Point]]


async def drive(ledgers: dict[str, Ledger], args: argparse.Namespace) -> Samples:
    samples: Samples = {}
    channels = {
        mode: (ledger.channel(GENERATION), ledger.channel(OPERATOR)) for mode, ledger in ledgers.items()
    }
    try:
        for generation, operator in channels.values():  # warm up pools, caches and connections
            await pairs_per_second(4, 1.0, await funded_pairs(generation, operator, 4))

        async def point(
            run: int, measure: str, clients: int, mode: str, work: Awaitable[tuple[float, int]]
        ) -> None:
            result = await measured(ledgers[mode], work)
            samples.setdefault((measure, clients, mode), []).append(result)
            print(
                f"run {run} {MEASURES[measure]:<32} {clients:>2} clients {mode:<9} {result.value:9.2f}   "
                f"CPU ms/op client {result.client_ms:.3f} ledger {result.server_ms:.3f}   "
                f"load {result.load:.1f}",
                flush=True,
            )

        for run, order in turns(args.runs):
            for clients in args.clients:
                for mode in order:
                    generation, operator = channels[mode]
                    pair = await funded_pairs(generation, operator, clients)
                    await point(run, "pairs", clients, mode, throughput(clients, args.seconds, pair))
                for mode in order:
                    pair = health_pair(channels[mode][0])
                    await point(run, "floor", clients, mode, throughput(clients, args.seconds, pair))
            for mode in order:
                opener = functools.partial(ledgers[mode].channel, OPERATOR)
                await point(run, "connect", 1, mode, connections(opener, args.connections))
    finally:
        for pair_of_channels in channels.values():
            for channel in pair_of_channels:
                await channel.close()
    return samples


def table(samples: Samples) -> list[str]:
    lines = [
        "| measure | clients | plaintext | mTLS | mTLS ÷ plaintext "
        "| client CPU ms/op, plaintext → mTLS | ledger CPU ms/op, plaintext → mTLS |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for (measure, clients, mode), _ in samples.items():
        if mode != PLAIN:
            continue
        plain, mtls = samples[(measure, clients, PLAIN)], samples[(measure, clients, MTLS)]

        def med(points: list[Point], field: str) -> float:
            return float(statistics.median(getattr(p, field) for p in points))

        value, tls_value = med(plain, "value"), med(mtls, "value")
        lines.append(
            f"| {MEASURES[measure]} | {clients} | {value:.1f} | {tls_value:.1f} | {tls_value / value:.2f} "
            f"| {med(plain, 'client_ms'):.2f} → {med(mtls, 'client_ms'):.2f} "
            f"| {med(plain, 'server_ms'):.2f} → {med(mtls, 'server_ms'):.2f} |"
        )
    return lines


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds per throughput point")
    parser.add_argument("--clients", type=int, nargs="+", default=list(CLIENTS), help="client counts")
    parser.add_argument("--runs", type=int, default=2, help="runs of every point (medians); order alternates")
    parser.add_argument("--connections", type=int, default=50, help="new connections per (c) point")
    parser.add_argument("--write", action="store_true", help="write the table into docs/benchmarks.md")
    args = parser.parse_args()

    before = os.getloadavg()
    print(f"load average before: {before[0]:.2f} {before[1]:.2f} {before[2]:.2f}", flush=True)
    run = uuid.uuid4().hex[:8]
    scratch = Path(tempfile.mkdtemp(prefix="atelier-tls-bench-"))
    pki = scratch / "pki"
    issue_all(pki, (LEDGER, GENERATION, OPERATOR))
    common = {key: value for key, value in os.environ.items() if key not in (TLS_DIR, PUBLIC_KEYS)}
    common.update(
        ATELIER_GRPC_HOST="127.0.0.1",
        ATELIER_NATS_URL=NATS,
        # Two ledgers, ten connections each at most: other suites share this PostgreSQL's 100.
        ATELIER_DB_POOL_SIZE="8",
        ATELIER_DB_MAX_OVERFLOW="2",
        ATELIER_LOG_LEVEL="ERROR",
    )
    ledgers: dict[str, Ledger] = {}
    for mode in (PLAIN, MTLS):
        port = free_port()
        ledgers[mode] = Ledger(
            mode,
            with_database(SERVER, f"bench_{run}_{mode.lower()}").render_as_string(hide_password=False),
            f"bench{run}{mode.lower()}",
            port,
            StackCaller(pki, {LEDGER: f"127.0.0.1:{port}"}) if mode == MTLS else None,
        )
    tls_env = {TLS_DIR: str(pki / LEDGER), PUBLIC_KEYS: str(pki / "user-token" / "public.pem")}
    try:
        await ledgers[PLAIN].start(common)
        await ledgers[MTLS].start({**common, **tls_env})
        samples = await drive(ledgers, args)
        mint, verify = token_costs(pki)
    finally:
        for ledger in ledgers.values():
            await ledger.stop()
        shutil.rmtree(scratch, ignore_errors=True)

    loads = [p.load for points in samples.values() for p in points]
    load = f"load average {before[0]:.1f} before, {min(loads):.1f}–{max(loads):.1f} during the points"
    lines = table(samples)
    tokens = (
        f"User token (Ed25519 JWT, `kit.user_tokens`, in the client process): mint {mint:.1f} µs, "
        f"verify {verify:.1f} µs per token."
    )
    print("\n".join(lines))
    print(tokens)
    print(load)
    if args.write:
        write_docs(lines, tokens, args, load)


def write_docs(lines: list[str], tokens: str, args: argparse.Namespace, load: str) -> None:
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    clients = " and ".join(str(c) for c in args.clients)
    write_section(
        "tls-bench",
        [
            "## The cost of mTLS: one ledger plaintext, one with mutual TLS, same run",
            "",
            f"`python -m bench.tls_bench --seconds {args.seconds:g} --runs {args.runs} --write`: two",
            "ledger processes on scratch databases, one plaintext (development: the workload is a header",
            "claim) and one with a scratch PKI from `devkit.pki` (ECDSA P-256 certificates, as the",
            f"launcher's); the same client code and client counts ({clients}), {args.seconds:g} s per",
            f"throughput point, each ledger going first in turn, {args.runs} runs, medians. Hold + capture",
            "pairs: holds as `generation`, captures as `operator`, one channel each; health checks: the",
            "same channels, no database; new connection: open a channel and complete its first health",
            f"check, one after another, median of {args.connections}. CPU per operation (per pair, or per",
            "connection) is user + system time of the client process and of the ledger driven (the",
            "ledger's in 10 ms ticks: ±0.2 ms per connection). The calls carry no user token; the line",
            "under the table is what one adds.",
            f"Measured {when} on {os.cpu_count()} cores, {load} (the bench's own client, ledger and",
            "PostgreSQL make part of that load).",
            "",
            *lines,
            "",
            tokens,
        ],
    )


if __name__ == "__main__":
    asyncio.run(main())
