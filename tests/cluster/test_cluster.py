"""The production shape on one machine, under faults. A request fails when the client, retrying with the
same Idempotency-Key across both gateways for up to 10 s, gets no 2xx or 4xx answer: none may fail. Each
test ends as the fault suite does: every task and run terminal, failed work uncharged, nothing charged
twice, balances exact, reconcile green."""

from __future__ import annotations

import asyncio
import random
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import httpx
import psutil
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from devkit.launcher import ready
from kit.bus import STREAMS, Bus
from kit.tls import TlsFiles
from tests.cluster.conftest import ADOPTED
from tests.e2e.stack import Stack
from tests.faults.workload import FULL, check_money, child_pid, make_users, settle, stream, wait_ready

pytestmark = pytest.mark.slow
SERVICES = ("accounts", "catalog", "ledger", "generation", "workflow")
PROCESSES = (*SERVICES, "worker", "gateway")
DEADLINE = 10.0  # seconds a client retries one request across the gateways before it counts as failed


class Faults(threading.Thread):
    """A thread injecting faults; `join` raises what stopped it early."""

    def __init__(self, target: Callable[..., None], *args: object) -> None:
        super().__init__()
        self.work, self.args_ = target, args
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.work(*self.args_)
        except BaseException as error:
            self.error = error

    def join(self, timeout: float | None = None) -> None:
        super().join(timeout)
        if self.error is not None:
            raise self.error


def instances() -> list[str]:
    return [name for process in PROCESSES for name in (process, f"{process}-2")]


def servers(stack: Stack) -> list[tuple[psutil.Process, list[str]]]:
    """The launcher's living children with their command lines (a killed one stays a zombie there)."""
    assert stack.process is not None
    living = []
    for child in psutil.Process(stack.process.pid).children():
        try:
            living.append((child, child.cmdline()))
        except psutil.NoSuchProcess:  # zombies included
            continue
    return living


def nats_nodes(stack: Stack) -> dict[str, psutil.Process]:
    """The launcher's NATS nodes by name (n1, n2, n3), from their config files."""
    nodes = {}
    for child, command in servers(stack):
        if command and command[0].endswith("nats-server") and "-c" in command:
            config = command[command.index("-c") + 1]
            nodes[config.split("/")[-2]] = child
    return nodes


async def _stream_replicas(url: str, namespace: str, pki: Path) -> dict[str, int]:
    bus = await Bus.connect(url, namespace=namespace, name="test-cluster", tls=TlsFiles(pki / "operator"))
    try:
        return {name: await bus.replicas(name) for name in STREAMS}
    finally:
        await bus.close()


def test_every_process_runs_twice_on_three_nats_nodes_with_streams_at_r3(cluster: Stack) -> None:
    pids = {name: child_pid(cluster, name) for name in instances()}
    assert len(set(pids.values())) == len(instances())
    assert sorted(nats_nodes(cluster)) == ["n1", "n2", "n3"]
    info = cluster.info()
    assert len(info["gateways"]) == 2
    assert all(address.startswith("ipv4:") and "," in address for address in info["services"].values())
    replicas = asyncio.run(
        _stream_replicas(info["nats_url"], cluster.env["ATELIER_NAMESPACE"], Path(info["pki"]))
    )
    assert replicas == dict.fromkeys(STREAMS, 3)


def _kill_one_of_each(cluster: Stack, killed: list[str]) -> None:
    """kill -9 one replica of every process and one NATS node (started again, it catches up), in random
    order, while the workload runs; the launcher restarts each process."""
    victims = [random.choice((p, f"{p}-2")) for p in PROCESSES] + ["nats"]
    random.shuffle(victims)
    for victim in victims:
        time.sleep(random.uniform(0.5, 2.0))
        if victim == "nats":
            node = random.choice(list(nats_nodes(cluster).values()))
            command = node.cmdline()
            node.kill()  # the launcher is its parent: it stays a zombie there, its ports free at once
            time.sleep(2.0)
            ADOPTED.append(subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL))
        else:
            psutil.Process(child_pid(cluster, victim)).kill()
        killed.append(victim)
    wait_ready(cluster)


def test_kill_9_of_one_replica_of_everything_and_a_nats_node_fails_no_request(cluster: Stack) -> None:
    users = make_users(cluster, 3, deadline=DEADLINE)
    killed: list[str] = []
    rounds = 3 if FULL else 1
    for _ in range(rounds):
        faults = Faults(_kill_one_of_each, cluster, killed)
        faults.start()
        stream(users, 10.0, while_alive=faults)
        faults.join()
    expected = Counter(dict.fromkeys((*PROCESSES, "nats"), rounds))
    assert Counter(name.removesuffix("-2") for name in killed) == expected
    settle(users, stack=cluster)
    counts = check_money(cluster, users)  # includes: no user saw a failed request
    assert counts["succeeded"] > 0, counts
    assert counts["runs"] > 0, counts


def _serving(port: int, pki: Path) -> bool:
    """Health over mutual TLS, as the operator (every certificate names `localhost`)."""
    files = (pki / "ca.crt", pki / "operator" / "tls.key", pki / "operator" / "tls.crt")
    credentials = grpc.ssl_channel_credentials(*(path.read_bytes() for path in files))
    options = [("grpc.ssl_target_name_override", "localhost")]
    with grpc.secure_channel(f"127.0.0.1:{port}", credentials, options) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1)
        except grpc.RpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def wait_instance_ready(cluster: Stack, name: str, timeout: float = 90) -> None:
    """Until this one replica is ready, as a readiness probe sees it: a gateway's /readyz says ready, a
    service's or the worker's gRPC health says SERVING on every port it listens on."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            process = psutil.Process(child_pid(cluster, name))
            if name.startswith("gateway"):
                if ready(f"http://127.0.0.1:{process.environ()['ATELIER_METRICS_PORT']}"):
                    return
            else:
                ports = [
                    c.laddr.port for c in process.net_connections("tcp") if c.status == psutil.CONN_LISTEN
                ]
                pki = Path(cluster.info()["pki"])
                if ports and all(_serving(port, pki) for port in ports):
                    return
        except (AssertionError, psutil.Error):
            pass
        time.sleep(0.2)
    raise AssertionError(f"{name} was not ready again in {timeout} s")


def rolled() -> list[str]:
    """Every replica with the full-faults flag; otherwise one replica of every process (each process's
    service goes through a restart under load while CI's share stays within minutes)."""
    if FULL:
        return instances()
    return [process if n % 2 else f"{process}-2" for n, process in enumerate(PROCESSES)]


def _rolling_restart(cluster: Stack, restarted: list[str]) -> None:
    """What a rollout does: each replica in turn gets SIGTERM, drains and stops; the launcher starts it
    again, and the next one goes once the new one is ready (its own probe, as Kubernetes waits for it)."""
    for name in rolled():
        old = child_pid(cluster, name)
        process = psutil.Process(old)
        process.send_signal(signal.SIGTERM)
        process.wait(30)
        end = time.monotonic() + 60
        while time.monotonic() < end:
            try:
                if child_pid(cluster, name) != old:
                    break
            except AssertionError:
                pass
            time.sleep(0.2)
        wait_instance_ready(cluster, name)
        restarted.append(name)


def test_a_rolling_restart_of_every_replica_fails_no_request(cluster: Stack) -> None:
    users = make_users(cluster, 2, deadline=DEADLINE)
    restarted: list[str] = []
    faults = Faults(_rolling_restart, cluster, restarted)
    faults.start()
    stream(users, 5.0, while_alive=faults)
    faults.join()
    assert restarted == rolled()
    settle(users, stack=cluster)
    check_money(cluster, users)


def _succeeded_task(cluster: Stack) -> dict[str, Any]:
    """An image task that succeeded (the local provider fails a fifth of them on purpose)."""
    (user,) = make_users(cluster, 1, deadline=DEADLINE)
    for _ in range(10):
        user.submit_task()
    settle([user], stack=cluster)
    for task_id in user.tasks:
        task: dict[str, Any] = user.http.get(f"/v1/tasks/{task_id}").json()
        if task["status"] == "succeeded":
            return task
    raise AssertionError("no task succeeded")


def test_an_output_is_served_whole_and_in_ranges_by_every_gateway(cluster: Stack) -> None:
    task = _succeeded_task(cluster)
    url = httpx.URL(task["outputs"][0]["url"])
    path = url.raw_path.decode()  # the signed path and query, valid on any gateway
    bodies = []
    for gateway in cluster.gateways:
        whole = httpx.get(f"{gateway}{path}", timeout=30)
        assert whole.status_code == 200, whole.text
        assert whole.content.startswith(b"\x89PNG")
        bodies.append(whole.content)
        part = httpx.get(f"{gateway}{path}", headers={"Range": "bytes=0-99"}, timeout=30)
        assert part.status_code == 206
        assert part.headers["content-range"] == f"bytes 0-99/{len(whole.content)}"
        assert part.content == whole.content[:100]
        head = httpx.head(f"{gateway}{path}", timeout=30)
        assert int(head.headers["content-length"]) == len(whole.content)
        assert head.headers["etag"] == whole.headers["etag"]
    assert bodies[0] == bodies[1]


def _restart_object_store(cluster: Stack, restarted: list[int]) -> None:
    """kill -9 the S3 server (SeaweedFS) mid-load and start it again on the same data and ports."""
    time.sleep(random.uniform(1.0, 3.0))
    ((store, command),) = [
        (child, command) for child, command in servers(cluster) if command[:1] and command[0].endswith("weed")
    ]
    store.kill()
    time.sleep(1.0)
    null = subprocess.DEVNULL
    ADOPTED.append(subprocess.Popen(command, stdin=null, stdout=null, stderr=null))
    restarted.append(store.pid)


def test_a_restarted_object_store_loses_no_output(cluster: Stack) -> None:
    users = make_users(cluster, 2, deadline=DEADLINE)
    restarted: list[int] = []
    faults = Faults(_restart_object_store, cluster, restarted)
    faults.start()
    stream(users, 12.0, while_alive=faults)
    faults.join()
    assert restarted
    settle(users, stack=cluster, timeout=240)
    check_money(cluster, users)
    # Every task that succeeded has its file: a write that failed while the store was down was retried.
    for user in users:
        for task_id in user.tasks:
            task = user.http.get(f"/v1/tasks/{task_id}").json()
            if task["status"] != "succeeded":
                continue
            for output in task["outputs"]:
                path = httpx.URL(output["url"]).raw_path.decode()
                assert user.http.get(path).status_code == 200, (task_id, output)
