"""The bus over TLS: a three-node cluster whose routes only the server's certificate may join, and a
connection that picks up its rotated certificate when it reconnects."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from devkit import nats_auth
from devkit.embedded import EmbeddedNats, free_port, nats_server_binary, port_block
from devkit.nats_cluster import NatsCluster
from devkit.pki import Authority, issue_all, write_atomically
from kit.bus import STREAMS, Bus
from kit.tls import TlsFiles


@dataclass(frozen=True)
class Secured:
    cluster: NatsCluster
    pki: Path
    namespace: str


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    home = tmp_path_factory.mktemp("nats-tls")
    issue_all(home / "pki")
    namespace = f"t{uuid.uuid4().hex[:10]}"
    cluster = NatsCluster(home / "cluster", pki=home / "pki", namespace=namespace)
    cluster.start()
    try:
        yield Secured(cluster, home / "pki", namespace)
    finally:
        cluster.stop()


async def _eventually(check: Callable[[], bool], seconds: float) -> None:
    for _ in range(int(seconds / 0.1)):
        if check():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"not within {seconds} s")


async def test_a_secured_cluster_replicates_over_tls_routes(secured: Secured) -> None:
    bus = await Bus.connect(
        secured.cluster.url,
        namespace=secured.namespace,
        name="test-tls",
        tls=TlsFiles(secured.pki / "ledger"),
    )
    try:
        async with asyncio.timeout(30):  # a new cluster answers once its nodes have elected a meta leader
            while True:
                try:
                    await bus.js.account_info()
                    break
                except Exception:
                    await asyncio.sleep(0.2)
        await bus.ensure_streams(3)
        assert {name: await bus.replicas(name) for name in STREAMS} == dict.fromkeys(STREAMS, 3)
        assert (await bus.publish("balances.changed", b"x", msg_id="r3")).stream == bus.stream("EVENTS")
    finally:
        await bus.close()


def test_a_workload_certificate_cannot_join_as_a_route(secured: Secured, tmp_path: Path) -> None:
    """A server presenting the gateway's certificate (same CA) on its routes is not let in."""
    first = secured.cluster.nodes[0]
    client_port = port_block(2) + 1
    config = tmp_path / "rogue.conf"
    config.write_text(
        f'server_name: "rogue"\nlisten: 127.0.0.1:{client_port}\n'
        f'cluster {{ name: "atelier", listen: 127.0.0.1:{client_port + 1}, '
        f'routes: ["nats-route://127.0.0.1:{first.route_port}"]\n'
        f"{nats_auth.route_config(secured.pki / 'gateway')}}}\n"
    )
    node_log, rogue_log = first.home / "nats.log", tmp_path / "rogue.log"
    before = node_log.read_text()
    rogue = subprocess.Popen(
        [nats_server_binary(), "-c", str(config), "-l", str(rogue_log)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 15
        while not (
            "authentication error" in node_log.read_text().removeprefix(before)
            and rogue_log.exists()
            and "Route Error 'Authorization Violation'" in rogue_log.read_text()
        ):
            assert time.monotonic() < deadline, "the node never refused the rogue route"
            time.sleep(0.1)
    finally:
        rogue.terminate()
        rogue.wait(10)


async def test_a_connection_loads_its_rotated_certificate_when_it_reconnects(tmp_path: Path) -> None:
    """The files move to a new CA (and the server with them): the reconnection after the restart can only
    succeed with the new files, loaded when the connection dropped."""
    pki = tmp_path / "pki"
    issue_all(pki, ("ledger",))
    server = EmbeddedNats(tmp_path / "nats", free_port(), tmp_path / "nats.log", pki=pki)
    url = server.start()
    try:
        bus = await Bus.connect(url, name="test-rotation", tls=TlsFiles(pki / "ledger", check_every=0))
        try:
            await bus.ensure_streams()
            # Another CA, by another name: its certificates carry no key identifiers, so a client that
            # trusts two CAs of one name could not tell which signed the server's.
            rotated = Authority.create("Atelier local CA, rotated")
            write_atomically(pki / "ca.crt", rotated.pem)
            write_atomically(
                pki / "ca.key",
                rotated.key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                ),
            )
            rotated.issue("ledger", pki / "ledger")
            server.stop()
            assert server.start() == url
            await _eventually(lambda: bus.nc.stats["reconnects"] > 0 and bus.nc.is_connected, 20)
            assert (await bus.publish("balances.changed", b"x", msg_id="rotated")).seq >= 1
        finally:
            # Not a drain, and bounded: a connection that never came back may not close cleanly either.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(bus.nc.close(), 5)
    finally:
        server.stop()
