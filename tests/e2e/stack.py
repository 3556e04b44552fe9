"""The whole product as processes, started by the same launcher as `make run`, driven over HTTP.

Where the tests have PostgreSQL and NATS servers (tests/infra.py), the launcher uses them (its own
databases and NATS namespace for this run); elsewhere it starts its embedded ones.
"""

from __future__ import annotations

import asyncio
import email
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import psycopg

from devkit.embedded import port_block
from devkit.launcher import ready
from kit.bus import Bus
from kit.db import libpq_dsn
from tests.infra import Infra

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("accounts", "catalog", "ledger", "generation", "workflow")


class Failover(httpx.HTTPTransport):
    """A client's view of several gateways behind a load balancer: each request goes to the next gateway in
    turn, and to the one after that when a gateway refuses the connection (it is stopped or restarting)."""

    def __init__(self, gateways: list[str]) -> None:
        super().__init__()
        self.gateways = [httpx.URL(url) for url in gateways]
        self.turn = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.turn += 1
        for attempt in range(len(self.gateways)):
            gateway = self.gateways[(self.turn + attempt) % len(self.gateways)]
            request.url = request.url.copy_with(host=gateway.host, port=gateway.port)
            try:
                return super().handle_request(request)
            except httpx.ConnectError:
                if attempt == len(self.gateways) - 1:
                    raise
        raise AssertionError("unreachable")


class Stack:
    def __init__(self, home: Path, infra: Infra | None, *, cluster: bool = False) -> None:
        self.home = home
        self.cluster = cluster
        # gateway = base+1, gRPC services = base+3 .. base+7, NATS = base+8, gateway operations = base+9;
        # the cluster's second replicas 10 above each (devkit/launcher.py REPLICA_STRIDE).
        ports = port_block(20)
        self.http_port = ports + 1
        self.base_url = f"http://127.0.0.1:{self.http_port}"
        self.ops_url = f"http://127.0.0.1:{ports + 9}"
        replicas = range(2 if cluster else 1)
        self.gateways = [f"http://127.0.0.1:{self.http_port + 10 * r}" for r in replicas]
        self.ops_urls = [f"http://127.0.0.1:{ports + 9 + 10 * r}" for r in replicas]
        self.prefix = f"e{uuid.uuid4().hex[:6]}_"
        env = {k: v for k, v in os.environ.items() if not k.startswith("ATELIER_") and k != "DATABASE_URL"}
        env.update(
            ATELIER_HOME=str(home),
            ATELIER_HTTP_PORT=str(self.http_port),
            ATELIER_GRPC_PORT_BASE=str(ports + 2),
            ATELIER_METRICS_PORT_BASE="0",
            ATELIER_OPS_PORT=str(ports + 9),
            ATELIER_EMBEDDED_NATS_PORT=str(ports + 8),
            ATELIER_DB_PREFIX=self.prefix,
            ATELIER_LOG_LEVEL="INFO",
        )
        if infra is not None:
            env.update(
                DATABASE_URL=infra.database_server,
                ATELIER_NATS_URL=infra.nats_url,
                ATELIER_NAMESPACE=f"{infra.namespace}{self.prefix.rstrip('_')}",
            )
        if cluster:  # the launcher starts a NATS cluster of its own, three nodes under `home`
            env.pop("ATELIER_NATS_URL", None)
        self.env = env
        self.process: subprocess.Popen[str] | None = None
        self.log = home / "launcher.log"

    # -- life ------------------------------------------------------------------------------------
    def start(self, timeout: float = 150) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "devkit.cli", "run", *(["--cluster"] if self.cluster else [])],
            cwd=ROOT,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=self.log.open("a"),
            stderr=subprocess.STDOUT,
            text=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the launcher exited:\n{self.log.read_text()[-4000:]}")
            if all(ready(ops) for ops in self.ops_urls):
                return
            time.sleep(0.5)
        raise RuntimeError(f"the stack was not ready in {timeout} s:\n{self.log.read_text()[-4000:]}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.drop_databases()
        self.drop_streams()

    def drop_databases(self) -> None:
        server = self.env.get("DATABASE_URL")
        if not server:
            return
        with psycopg.connect(libpq_dsn(server), autocommit=True) as conn:
            for service in SERVICES:
                conn.execute(f'DROP DATABASE IF EXISTS "{self.prefix}{service}" WITH (FORCE)')

    def drop_streams(self) -> None:
        """This stack's JetStream streams: they outlive its processes, on the shared NATS server."""
        namespace = self.env.get("ATELIER_NAMESPACE")
        if namespace and "ATELIER_NATS_URL" in self.env:
            asyncio.run(asyncio.wait_for(_drop_streams(self.env["ATELIER_NATS_URL"], namespace), 30))

    def info(self) -> dict[str, Any]:
        """Where the launcher runs everything (its stack.json)."""
        info: dict[str, Any] = json.loads((self.home / "stack.json").read_text())
        return info

    def database(self, service: str) -> str:
        dsn: str = self.info()["databases"][service]
        return dsn

    # -- a client's view -------------------------------------------------------------------------
    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        if self.cluster:
            return httpx.Client(
                base_url=self.base_url, headers=headers, timeout=30, transport=Failover(self.gateways)
            )
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=30)

    def verification_token(self, address: str, timeout: float = 15) -> str:
        """The token in the newest verification mail to `address` in the dev mail outbox."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for path in sorted((self.home / "mail").glob("*.eml"), reverse=True):
                message = email.message_from_bytes(path.read_bytes())
                if message["To"] and address in message["To"]:
                    for part in message.walk():
                        if part.get_content_type() == "text/plain":
                            text = part.get_payload(decode=True).decode()  # type: ignore[union-attr]
                            found = re.search(r"verify-email/([A-Za-z0-9_=-]+)", text)
                            if found:
                                return found.group(1)
            time.sleep(0.2)
        raise AssertionError(f"no verification mail for {address}")

    def reconcile(self) -> subprocess.CompletedProcess[str]:
        env = dict(self.env)
        env["ATELIER_DATABASE_URL"] = self.database("ledger")
        return subprocess.run(
            [sys.executable, "-m", "services.ledger", "reconcile"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )


async def _drop_streams(nats_url: str, namespace: str) -> None:
    bus = await Bus.connect(nats_url, namespace=namespace, name="atelier-tests-cleanup")
    try:
        await bus.delete_streams()
    finally:
        await bus.close()
