"""The one-command launcher on its embedded defaults: PostgreSQL, NATS and SeaweedFS's S3 API from wheels."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import botocore.session
import httpx
import psutil
import pytest

from devkit.embedded import port_block
from devkit.launcher import DEV_ADMIN_EMAIL, DEV_ADMIN_PASSWORD
from tests.conftest import ROOT

pytestmark = pytest.mark.slow


class Stack:
    def __init__(self, home: Path) -> None:
        self.home = home
        # gateway = base+1, gRPC services = base+3 .. base+7, NATS = base+8, gateway operations = base+9
        ports = port_block(9)
        self.http_port = ports + 1
        self.ops_port = ports + 9
        grpc_base = ports + 2
        self.env = {
            key: value
            for key, value in os.environ.items()
            if key not in ("DATABASE_URL", "ATELIER_NATS_URL", "ATELIER_SERVER_DATABASE_URL")
        }
        self.env.update(
            ATELIER_HOME=str(home),
            ATELIER_HTTP_PORT=str(self.http_port),
            ATELIER_GRPC_PORT_BASE=str(grpc_base),
            ATELIER_METRICS_PORT_BASE="0",
            ATELIER_OPS_PORT=str(self.ops_port),
            ATELIER_EMBEDDED_NATS_PORT=str(ports + 8),
        )
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "devkit.cli", "run"],
            cwd=ROOT,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def wait_ready(self, timeout: float = 120) -> dict[str, object]:
        deadline = time.monotonic() + timeout
        last: object = None
        while time.monotonic() < deadline:
            assert self.process is not None
            assert self.process.poll() is None, self.output()
            try:
                reply = httpx.get(f"http://127.0.0.1:{self.ops_port}/readyz", timeout=2)
                last = reply.json()
                if reply.json()["status"] == "ready":
                    return reply.json()  # type: ignore[no-any-return]
            except httpx.HTTPError as exc:
                last = exc
            time.sleep(0.5)
        raise AssertionError(f"not ready: {last}")

    def descendants(self) -> list[psutil.Process]:
        assert self.process is not None
        children: list[psutil.Process] = psutil.Process(self.process.pid).children(recursive=True)
        return children

    def stop(self) -> str:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        out, _ = self.process.communicate(timeout=60)
        return out

    def output(self) -> str:
        return "" if self.process is None or self.process.stdout is None else self.process.stdout.read()


def postgres_processes(datadir: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if "postgres" in cmdline and str(datadir) in cmdline:
            found.append(proc)
    return found


def s3_client(home: Path, endpoint: str) -> Any:
    key = json.loads((home / "seaweedfs" / "s3.json").read_text())["identities"][0]["credentials"][0]
    return botocore.session.get_session().create_client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=key["accessKey"],
        aws_secret_access_key=key["secretKey"],
    )


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    stack = Stack(tmp_path / "home")
    yield stack
    if stack.process and stack.process.poll() is None:
        stack.process.kill()


def test_launcher_starts_serves_and_stops_cleanly_keeping_its_data(stack: Stack) -> None:
    stack.start()
    ready = stack.wait_ready()
    assert ready["services"] == {
        name: "SERVING" for name in ("accounts", "catalog", "ledger", "generation", "workflow")
    }
    assert ready["nats"] == "ok"
    assert (
        httpx.get(f"http://127.0.0.1:{stack.http_port}/openapi.json").json()["info"]["title"] == "Atelier API"
    )
    stack_file = json.loads((stack.home / "stack.json").read_text())
    # The first admin exists (development defaults) and can sign in.
    login = httpx.post(
        f"http://127.0.0.1:{stack.http_port}/v1/auth/login",
        json={"email": DEV_ADMIN_EMAIL, "password": DEV_ADMIN_PASSWORD},
        timeout=10,
    )
    assert login.status_code == 200, login.text
    assert login.json()["user"]["role"] == "admin"
    children = stack.descendants()
    names = " ".join(" ".join(p.cmdline()) for p in children)
    for module in (
        "services.accounts",
        "services.ledger",
        "services.generation.worker",
        "gateway",
        "nats-server",
        "weed server",
    ):
        assert module in names
    # The S3 API wants the keys from the data folder; its Iceberg and Lance listeners are off.
    s3 = stack_file["s3"]
    assert httpx.get(f"{s3['endpoint']}/{s3['bucket']}/").status_code == 403
    assert "-s3.port.iceberg=0" in names
    assert "-s3.port.lance=0" in names
    bucket = s3_client(stack.home, s3["endpoint"])
    bucket.put_object(Bucket=s3["bucket"], Key="launcher-test", Body=b"kept")

    # Leave a mark in a service database, to find it again after a restart.
    import psycopg

    with psycopg.connect(stack_file["databases"]["ledger"], autocommit=True) as conn:
        conn.execute("INSERT INTO inbox (consumer, event_id) VALUES ('launcher-test', 'kept')")

    output = stack.stop()
    assert stack.process is not None
    assert stack.process.returncode == 0, output
    time.sleep(0.5)
    assert [p for p in children if p.is_running() and p.status() != psutil.STATUS_ZOMBIE] == []
    assert postgres_processes(stack.home / "postgres") == []
    port = s3["endpoint"].rsplit(":", 1)[1]
    assert list(Path("/tmp").glob(f"seaweedfs-*-{port}.sock")) == []

    stack.start()
    stack.wait_ready()
    endpoint = json.loads((stack.home / "stack.json").read_text())["s3"]["endpoint"]
    kept_file = s3_client(stack.home, endpoint).get_object(Bucket=s3["bucket"], Key="launcher-test")
    assert kept_file["Body"].read() == b"kept"
    with psycopg.connect(stack_file["databases"]["ledger"]) as conn:
        kept = conn.execute("SELECT event_id FROM inbox WHERE consumer = 'launcher-test'").fetchall()
    assert kept == [("kept",)]
    stack.stop()


def test_a_crashed_child_is_reported_and_restarted(stack: Stack) -> None:
    stack.start()
    stack.wait_ready()
    ledger = next(p for p in stack.descendants() if "services.ledger" in " ".join(p.cmdline()))
    ledger.kill()
    time.sleep(1)
    ready = stack.wait_ready(60)
    assert ready["services"]["ledger"] == "SERVING"  # type: ignore[index]
    output = stack.stop()
    assert "ledger exited with code -9" in output
    assert "ledger restarted" in output
