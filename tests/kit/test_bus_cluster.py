"""The bus on a three-node JetStream cluster: streams keep the replicas ops gave them, and a node that was
killed catches up."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from devkit.nats_cluster import NatsCluster
from kit.bus import STREAMS, Bus


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsCluster]:
    nodes = NatsCluster(Path(tmp_path_factory.mktemp("nats-cluster")))
    nodes.start()
    try:
        yield nodes
    finally:
        nodes.stop()


@pytest.fixture
async def bus(cluster: NatsCluster) -> AsyncIterator[Bus]:
    connected = await Bus.connect(cluster.url, namespace=f"t{uuid.uuid4().hex[:10]}", name="test-cluster")
    await _until_meta_leader(connected)
    try:
        yield connected
    finally:
        await _tidy(connected)
        await connected.close()


async def _tidy(bus: Bus) -> None:
    """Deletes the test's streams. Just after a node was killed a stream's leader may still be settling
    and a delete times out: try again for a while; the cluster goes away with the module anyway."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(30):
            while True:
                try:
                    await bus.delete_streams()
                    return
                except Exception:
                    await asyncio.sleep(0.5)


async def _until_meta_leader(bus: Bus) -> None:
    """A new cluster answers JetStream requests only once its nodes have elected a meta leader."""
    async with asyncio.timeout(20):
        while True:
            try:
                await bus.js.account_info()
                return
            except Exception:
                await asyncio.sleep(0.2)


async def _publish_as_the_relay_does(bus: Bus, msg_id: str) -> None:
    """Publishes until acknowledged, as the outbox relay does: a message on the connection to the node that
    just died, or sent while a new stream leader is being elected, is not acknowledged and is sent again
    (JetStream drops the copy by its id)."""
    async with asyncio.timeout(30):
        while True:
            try:
                await bus.publish("tasks.completed", b"x", msg_id=msg_id)
                return
            except Exception:
                await asyncio.sleep(0.2)


async def test_streams_are_created_with_the_configured_replicas(bus: Bus) -> None:
    await bus.ensure_streams(3)

    assert {name: await bus.replicas(name) for name in STREAMS} == dict.fromkeys(STREAMS, 3)


async def test_a_starting_service_never_lowers_what_an_operator_raised(bus: Bus) -> None:
    await bus.ensure_streams(1)
    # The operator's `nats stream edit EVENTS --replicas 3`.
    info = await bus.js.stream_info(bus.stream("EVENTS"))
    info.config.num_replicas = 3
    await bus.js.update_stream(info.config)

    await bus.ensure_streams(1)  # a service restarts with the default configuration

    assert await bus.replicas("EVENTS") == 3
    assert await bus.replicas("JOBS") == 1


async def test_a_killed_node_misses_nothing_once_it_is_back(cluster: NatsCluster, bus: Bus) -> None:
    await bus.ensure_streams(3)
    cluster.kill_node("n3")
    try:
        for n in range(20):
            await _publish_as_the_relay_does(bus, f"m{n}")
    finally:
        cluster.restart_node("n3")

    stream = bus.stream("EVENTS")
    deadline = asyncio.get_running_loop().time() + 20
    while True:
        info = await bus.js.stream_info(stream)
        replicas = info.cluster.replicas if info.cluster and info.cluster.replicas else []
        if len(replicas) == 2 and all(r.current and not r.lag for r in replicas):
            break
        assert asyncio.get_running_loop().time() < deadline, f"replicas never caught up: {replicas}"
        await asyncio.sleep(0.2)
    assert info.state.messages == 20
