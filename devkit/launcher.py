"""One command for the whole product on its embedded defaults.

Starts PostgreSQL (unless DATABASE_URL is given), NATS (unless ATELIER_NATS_URL is given) and SeaweedFS's
S3 API for the files (unless ATELIER_S3_ENDPOINT is given), then every service, the gateway and a generation
worker as child processes; prints the URL once every part answers;
restarts a child that crashes (and says so); stops everything on SIGINT/SIGTERM. Data lives under
ATELIER_HOME (default ./.atelier) and survives restarts. Every gRPC connection is mutual TLS: the launcher
keeps a local CA under `<home>/pki` and gives each workload its certificate (`devkit.pki`), and the
gateway the key that signs end-user tokens (`kit.user_tokens`).

The cluster shape (`atelier run --cluster`) is what Kubernetes runs, on one machine: a three-node NATS
JetStream cluster with streams at three replicas, and two replicas of every service, of the worker and of
the gateway. Replica r of anything listens `REPLICA_STRIDE * r` ports above the first; gRPC clients get
every replica's address and balance round robin (`ipv4:127.0.0.1:50053,127.0.0.1:50063`), as they do over
a headless Service's pods.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx

from devkit.embedded import EmbeddedNats, EmbeddedPostgres, EmbeddedSeaweed
from devkit.nats_cluster import NatsCluster
from devkit.pki import issue_all
from kit.db import libpq_dsn, with_database
from kit.settings import SERVICES

_PR_SET_PDEATHSIG = 1
# The first admin of a development stack (accounts ensures it at start). Never used elsewhere.
DEV_ADMIN_EMAIL = "admin@atelier.local"
DEV_ADMIN_PASSWORD = "atelier-dev-2026!"
REPLICA_STRIDE = 10


def _development() -> bool:
    return os.environ.get("ATELIER_ENVIRONMENT", "development") == "development"


def _die_with_parent() -> None:
    """Children get SIGTERM if the launcher itself dies (even by SIGKILL)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


@dataclass
class Child:
    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    log_file: IO[bytes] | None = None
    crashes: list[float] = field(default_factory=list)
    restart_at: float | None = None

    def start(self) -> None:
        self.log_file = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.argv,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,
        )
        self.restart_at = None

    def tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class Launcher:
    def __init__(
        self,
        home: Path,
        *,
        http_port: int,
        grpc_port_base: int,
        metrics_port_base: int,
        ops_port: int = 0,
        replicas: int = 1,
    ) -> None:
        self.home = home.resolve()
        self.http_port = http_port
        self.grpc_port_base = grpc_port_base
        self.metrics_port_base = metrics_port_base
        # The gateway's /healthz, /readyz and /metrics (gateway/ops.py), apart from its public port.
        self.ops_port = ops_port or metrics_port_base or http_port + 1
        self.replicas = replicas
        self.children: list[Child] = []
        self.postgres: EmbeddedPostgres | None = None
        self.nats: EmbeddedNats | NatsCluster | None = None
        self.seaweed: EmbeddedSeaweed | None = None
        # What generation and its worker need to reach the embedded S3 API (empty: the environment's).
        self.s3_env: dict[str, str] = {}
        self.stopping = False

    @property
    def cluster(self) -> bool:
        return self.replicas > 1

    def _port(self, first: int, replica: int) -> int:
        return first + REPLICA_STRIDE * replica

    @property
    def gateways(self) -> list[str]:
        return [f"http://127.0.0.1:{self._port(self.http_port, r)}" for r in range(self.replicas)]

    @property
    def gateway_ops(self) -> list[str]:
        return [f"http://127.0.0.1:{self._port(self.ops_port, r)}" for r in range(self.replicas)]

    def service_address(self, index: int) -> str:
        """Every replica of the `index`-th service, as a gRPC target."""
        ports = [self._port(self.grpc_port_base + index, r) for r in range(self.replicas)]
        if len(ports) == 1:
            return f"127.0.0.1:{ports[0]}"
        return "ipv4:" + ",".join(f"127.0.0.1:{port}" for port in ports)

    @classmethod
    def from_env(cls, *, cluster: bool = False) -> Launcher:
        return cls(
            Path(os.environ.get("ATELIER_HOME", ".atelier")),
            http_port=int(os.environ.get("ATELIER_HTTP_PORT", "8000")),
            grpc_port_base=int(os.environ.get("ATELIER_GRPC_PORT_BASE", "50050")),
            metrics_port_base=int(os.environ.get("ATELIER_METRICS_PORT_BASE", "9100")),
            ops_port=int(os.environ.get("ATELIER_OPS_PORT", "0")),
            replicas=2 if cluster else 1,
        )

    def say(self, text: str) -> None:
        print(f"[atelier] {text}", flush=True)

    # -- infrastructure --------------------------------------------------------------------------
    def _database_server(self) -> str:
        url = os.environ.get("DATABASE_URL") or os.environ.get("ATELIER_SERVER_DATABASE_URL")
        if url:
            self.say("using PostgreSQL at DATABASE_URL")
            return url
        self.postgres = EmbeddedPostgres(self.home / "postgres")
        url = self.postgres.start()
        self.say(f"embedded PostgreSQL running (data in {self.home / 'postgres'})")
        return url

    def _nats_server(self) -> str:
        url = os.environ.get("ATELIER_NATS_URL")
        if url:
            self.say(f"using NATS at {url}")
            return url
        # TLS with the workloads' certificates from the launcher's CA, each as its user (devkit/nats_auth.py).
        pki, namespace = self.home / "pki", os.environ.get("ATELIER_NAMESPACE", "")
        if self.cluster:
            self.nats = NatsCluster(self.home / "nats-cluster", pki=pki, namespace=namespace)
            url = self.nats.start()
            self.say(f"embedded NATS JetStream cluster of 3 nodes at {url}")
            return url
        port = int(os.environ.get("ATELIER_EMBEDDED_NATS_PORT", "14222"))
        log = self.home / "logs" / "nats.log"
        self.nats = EmbeddedNats(self.home / "nats", port, log, pki=pki, namespace=namespace)
        url = self.nats.start()
        self.say(f"embedded NATS JetStream running at {url} (data in {self.home / 'nats'})")
        return url

    def _launch_object_store(self) -> None:
        """Starts SeaweedFS without waiting: PostgreSQL and NATS come up meanwhile."""
        if os.environ.get("ATELIER_S3_ENDPOINT"):
            self.say(f"using S3 at {os.environ['ATELIER_S3_ENDPOINT']}")
            return
        port = int(os.environ.get("ATELIER_EMBEDDED_S3_PORT", "18333"))
        self.seaweed = EmbeddedSeaweed(self.home / "seaweedfs", port, self.home / "logs" / "seaweedfs.log")
        self.seaweed.launch()

    def _object_store(self) -> None:
        if self.seaweed is None:
            return
        access = self.seaweed.wait_ready()
        self.s3_env = access.settings_env()
        self.say(
            f"embedded SeaweedFS S3 API at {access.endpoint}, bucket {access.bucket!r} (data in "
            f"{self.seaweed.datadir}; first write {self.seaweed.ready_seconds:.1f} s after launch)"
        )

    # -- children --------------------------------------------------------------------------------
    def _plan(self, database_server: str, nats_url: str) -> list[Child]:
        prefix = os.environ.get("ATELIER_DB_PREFIX", "atelier_")
        common = dict(os.environ)
        pki = self.home / "pki"
        common.update(
            {
                "ATELIER_NATS_URL": nats_url,
                "ATELIER_HOME": str(self.home),
                "PYTHONUNBUFFERED": "1",
                "ATELIER_USER_TOKEN_PUBLIC_KEYS_FILE": str(pki / "user-token" / "public.pem"),
            }
        )
        common.pop("ATELIER_USER_TOKEN_SIGNING_KEY_FILE", None)
        # Links in mails point at this gateway unless a public URL is configured.
        common.setdefault("ATELIER_PUBLIC_URL", f"http://127.0.0.1:{self.http_port}")
        if self.cluster and self.nats is not None:  # the three-node NATS this launcher started
            common["ATELIER_NATS_STREAM_REPLICAS"] = "3"
        for index, service in enumerate(SERVICES, start=1):
            common[f"ATELIER_{service.upper()}_ADDR"] = self.service_address(index)
        logs = self.home / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        python = sys.executable

        def database(service: str) -> str:
            return with_database(database_server, f"{prefix}{service}").render_as_string(hide_password=False)

        def child(name: str, replica: int, module: str, workload: str = "", **env: str) -> Child:
            instance = name if replica == 0 else f"{name}-{replica + 1}"
            tls = {"ATELIER_GRPC_TLS_DIR": str(pki / (workload or name))}
            environ = {**common, **env, **tls, "ATELIER_INSTANCE": instance}
            return Child(instance, [python, "-m", module], environ, logs / f"{instance}.log")

        children = []
        for replica in range(self.replicas):
            for index, service in enumerate(SERVICES, start=1):
                env = {
                    "ATELIER_DATABASE_URL": database(service),
                    "ATELIER_GRPC_PORT": str(self._port(self.grpc_port_base + index, replica)),
                }
                if service == "accounts" and _development():
                    env["ATELIER_ADMIN_EMAIL"] = common.get("ATELIER_ADMIN_EMAIL", DEV_ADMIN_EMAIL)
                    env["ATELIER_ADMIN_PASSWORD"] = common.get("ATELIER_ADMIN_PASSWORD", DEV_ADMIN_PASSWORD)
                if self.metrics_port_base:
                    env["ATELIER_METRICS_PORT"] = str(self._port(self.metrics_port_base + index, replica))
                if service == "generation":
                    env.update(self.s3_env)
                children.append(child(service, replica, f"services.{service}", **env))
            children.append(
                child(
                    "worker",
                    replica,
                    "services.generation.worker",
                    workload="generation-worker",
                    ATELIER_DATABASE_URL=database("generation"),
                    ATELIER_GRPC_PORT="0",
                    ATELIER_MIGRATE_ON_START="false",
                    **self.s3_env,
                )
            )
            children.append(
                child(
                    "gateway",
                    replica,
                    "gateway",
                    ATELIER_HTTP_PORT=str(self._port(self.http_port, replica)),
                    ATELIER_METRICS_PORT=str(self._port(self.ops_port, replica)),
                    ATELIER_USER_TOKEN_SIGNING_KEY_FILE=str(pki / "user-token" / "signing.pem"),
                )
            )
        return children

    def start(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        issue_all(self.home / "pki")
        self._launch_object_store()
        database_server = self._database_server()
        nats_url = self._nats_server()
        self._object_store()
        self.children = self._plan(database_server, nats_url)
        self._write_stack_file(database_server, nats_url)
        for child in self.children:
            child.start()
        self.say(f"started {', '.join(c.name for c in self.children)} (logs in {self.home / 'logs'})")
        if _development() and "ATELIER_ADMIN_PASSWORD" not in os.environ:
            self.say(
                f"development admin: {os.environ.get('ATELIER_ADMIN_EMAIL', DEV_ADMIN_EMAIL)} / "
                f"{DEV_ADMIN_PASSWORD} (set ATELIER_ADMIN_EMAIL / ATELIER_ADMIN_PASSWORD to choose)"
            )
        if _development():
            self.say(f"verification and reset mails are written to {self.home / 'mail'}")

    def _write_stack_file(self, database_server: str, nats_url: str) -> None:
        """Where everything runs, for operator commands and tests (no secrets beyond the local DSNs)."""
        databases = {
            child.name: libpq_dsn(child.env["ATELIER_DATABASE_URL"])
            for child in self.children
            if child.name in SERVICES
        }
        info = {
            "gateway": self.gateways[0],
            "gateways": self.gateways,
            "gateway_ops": self.gateway_ops,
            "nats_url": nats_url,
            "database_server": libpq_dsn(database_server),
            "databases": databases,
            "services": {name: self.service_address(i) for i, name in enumerate(SERVICES, start=1)},
            # Each workload's certificate (<pki>/<workload>/), the user-token keys (`<pki>/user-token/`).
            "pki": str((self.home / "pki").resolve()),
            # The keys are in the SeaweedFS data folder (s3.json).
            "s3": {"endpoint": self.s3_env["ATELIER_S3_ENDPOINT"], "bucket": self.s3_env["ATELIER_S3_BUCKET"]}
            if self.s3_env
            else {},
        }
        (self.home / "stack.json").write_text(json.dumps(info, indent=2))

    def wait_ready(self, timeout: float = 120.0) -> bool:
        """Until every gateway's dependencies all answer (each /readyz says "ready", not "degraded")."""
        deadline = time.monotonic() + timeout
        waiting = list(self.gateway_ops)
        while time.monotonic() < deadline and not self.stopping:
            self.supervise()
            waiting = [ops for ops in waiting if not ready(ops)]
            if not waiting:
                return True
            time.sleep(0.3)
        return False

    def supervise(self) -> None:
        """Report and restart children that exited; give up on one that keeps crashing."""
        now = time.monotonic()
        for child in self.children:
            if child.process is None or self.stopping:
                continue
            code = child.process.poll()
            if code is None:
                continue
            if child.restart_at is None:
                child.crashes = [t for t in child.crashes if now - t < 60] + [now]
                delay = min(10.0, 0.5 * 2 ** (len(child.crashes) - 1))
                self.say(f"{child.name} exited with code {code}; restarting in {delay:.1f}s. Last log lines:")
                print(child.tail(), file=sys.stderr, flush=True)
                if len(child.crashes) > 6:
                    raise RuntimeError(f"{child.name} keeps crashing; see {child.log_path}")
                child.restart_at = now + delay
            elif now >= child.restart_at:
                if child.log_file:
                    child.log_file.close()
                child.start()
                self.say(f"{child.name} restarted")

    def stop(self) -> None:
        self.stopping = True
        for child in self.children:
            if child.process and child.process.poll() is None:
                child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for child in self.children:
            if child.process is None:
                continue
            try:
                child.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.say(f"{child.name} did not stop in time; killing it")
                child.process.kill()
                child.process.wait()
            if child.log_file:
                child.log_file.close()
        # SeaweedFS takes ~15 s to stop cleanly: the other servers stop meanwhile.
        seaweed = threading.Thread(target=self.seaweed.stop) if self.seaweed else None
        if seaweed:
            seaweed.start()
        if self.nats:
            self.nats.stop()
        if self.postgres:
            self.postgres.stop()
        if seaweed:
            seaweed.join()
        self.say("stopped")


def ready(ops: str) -> bool:
    """Whether a gateway's dependencies all answer (its /readyz on the operations port says "ready")."""
    try:
        return bool(httpx.get(f"{ops}/readyz", timeout=2.0).json().get("status") == "ready")
    except (httpx.HTTPError, ValueError):
        return False


def run(*, cluster: bool = False) -> int:
    launcher = Launcher.from_env(cluster=cluster)

    def on_signal(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    code = 0
    try:
        launcher.start()
        if launcher.wait_ready():
            launcher.say(f"Atelier is ready: {', '.join(launcher.gateways)}  (API docs at /docs)")
            launcher.say(f"operations (health, readiness, metrics): {', '.join(launcher.gateway_ops)}")
        else:
            launcher.say("not ready after 120 s; see the logs above. Still supervising.")
        while True:
            launcher.supervise()
            time.sleep(0.5)
    except KeyboardInterrupt:
        launcher.say("shutting down")
    except RuntimeError as exc:
        launcher.say(str(exc))
        code = 1
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        launcher.stop()
    return code
