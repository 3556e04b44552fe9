"""NATS refuses a workload outside its permissions (devkit/nats_auth.py), on a real nats-server with the
generated configuration and certificates from a local CA.

Allowed: each workload publishes its own events, pulls, acknowledges and dead-letters on its own durable
consumers, and the gateway reads the live events and its rate-limit bucket — through `kit.bus.Bus`, as
the services do. Refused: another workload's subjects, subscriptions outside the allow list (another
workload's inbox included), JetStream requests on streams and consumers not its own, and connections
without a certificate, with one from another CA, or with the server's own.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import ssl
import subprocess
import textwrap
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import nats
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from devkit import nats_auth
from devkit.embedded import EmbeddedNats, free_port, nats_server_binary
from devkit.pki import Authority, issue_all
from gateway import live, ratelimits
from kit.access import WORKLOADS
from kit.bus import STREAMS, Bus, Delivery, Permanent, inbox_prefix, namespaced_stream, namespaced_subject
from kit.tls import TlsFiles, spiffe_id

ROOT = Path(__file__).resolve().parents[2]
NAMESPACE = "t19"
VIOLATION = "permissions violation"


@dataclass(frozen=True)
class Server:
    url: str
    pki: Path
    foreign: Path  # a "ledger" certificate signed by another CA
    log: Path


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("nats-auth")
    issue_all(home / "pki")
    Authority.create("another CA").issue("ledger", home / "foreign")
    embedded = EmbeddedNats(
        home / "nats", free_port(), home / "nats.log", pki=home / "pki", namespace=NAMESPACE
    )
    url = embedded.start()
    try:
        yield Server(url, home / "pki", home / "foreign", home / "nats.log")
    finally:
        embedded.stop()


@pytest.fixture(scope="module")
async def buses(server: Server) -> AsyncIterator[dict[str, Bus]]:
    """Every workload's connection, the streams made (as a service does at start)."""
    connected = {
        workload: await Bus.connect(
            server.url, namespace=NAMESPACE, name=f"test-{workload}", tls=TlsFiles(server.pki / workload)
        )
        for workload in WORKLOADS
    }
    await connected["ledger"].ensure_streams()
    try:
        yield connected
    finally:
        for bus in connected.values():
            await bus.close()


@dataclass
class Raw:
    """A plain nats-py connection as `workload`, keeping what the server told it was refused."""

    nc: NatsClient
    errors: list[str] = field(default_factory=list)

    async def refused(self, what: str, subject: str) -> bool:
        """True once the server has said `what` ("Publish", "Subscription") to `subject` was refused."""
        expected = f'{VIOLATION} for {what.lower()} to "{subject.lower()}"'

        async def told() -> bool:
            await self.nc.flush()
            return any(expected in error for error in self.errors)

        await _eventually(told)
        return True


async def _eventually(check: Callable[[], Awaitable[bool]], seconds: float = 5.0) -> None:
    """Polls `check` until it holds: the server announces neither refusals nor applied acknowledgements."""
    for _ in range(int(seconds / 0.02)):
        if await check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{check.__name__} did not hold within {seconds} s")


def _context(server: Server, client: Path | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=server.pki / "ca.crt")
    if client is not None:
        context.load_cert_chain(client / "tls.crt", client / "tls.key")
    return context


async def _raw(server: Server, workload: str) -> Raw:
    raw = Raw(NatsClient())

    async def on_error(exc: Exception) -> None:
        raw.errors.append(str(exc).lower())

    await raw.nc.connect(
        server.url,
        tls=_context(server, server.pki / workload),
        inbox_prefix=inbox_prefix(workload),
        error_cb=on_error,
        allow_reconnect=False,
    )
    return raw


def _covered(subject: str, patterns: tuple[str, ...]) -> bool:
    """Whether a NATS subject pattern among `patterns` (`*` one token, `>` the rest) matches `subject`."""

    def matches(pattern: list[str], tokens: list[str]) -> bool:
        if not pattern:
            return not tokens
        if pattern[0] == ">":
            return bool(tokens)
        return bool(tokens) and pattern[0] in ("*", tokens[0]) and matches(pattern[1:], tokens[1:])

    return any(matches(p.split("."), subject.split(".")) for p in patterns)


def _publisher(subject: str) -> str:
    return next(w for w, role in nats_auth.ROLES.items() if subject in role.publishes)


PUBLISHED = sorted({s for role in nats_auth.ROLES.values() for s in role.publishes})
CONSUMERS = [(w, c) for w, role in nats_auth.ROLES.items() for c in role.consumes]


@pytest.mark.parametrize("workload", [w for w in WORKLOADS if nats_auth.ROLES[w].publishes])
async def test_a_workload_publishes_its_own_events(buses: dict[str, Bus], workload: str) -> None:
    bus = buses[workload]
    if nats_auth.ROLES[workload].ensures_streams:
        await bus.ensure_streams()
    for subject in nats_auth.ROLES[workload].publishes:
        ack = await bus.publish(subject, b"own", msg_id=str(uuid.uuid4()))
        assert ack.stream in {bus.stream(name) for name in STREAMS}


@pytest.mark.parametrize(
    ("workload", "consumer"), CONSUMERS, ids=[consumer.durable for _, consumer in CONSUMERS]
)
async def test_a_workload_pulls_acks_and_dead_letters_on_its_consumers(
    buses: dict[str, Bus], workload: str, consumer: nats_auth.Consumer
) -> None:
    bus, run = buses[workload], uuid.uuid4().hex
    publisher = buses[_publisher(consumer.subject)]
    for payload in (f"ok-{run}", f"bad-{run}"):
        await publisher.publish(consumer.subject, payload.encode(), msg_id=payload)
    seen: set[str] = set()
    stop = asyncio.Event()

    async def handler(delivery: Delivery) -> None:
        seen.add(delivery.data.decode())
        if {f"ok-{run}", f"bad-{run}"} <= seen:
            stop.set()
        if delivery.data == f"bad-{run}".encode():
            raise Permanent("refused on purpose")

    async with asyncio.timeout(20):
        await bus.consume(
            durable=consumer.durable,
            subject=consumer.subject,
            handler=handler,
            stop=stop,
            stream=consumer.stream,
        )

    async def acknowledged() -> bool:  # the server applies acknowledgements after it has read them
        info = await bus.js.consumer_info(bus.stream(consumer.stream), consumer.durable)
        pending: int = info.num_ack_pending or 0
        return pending == 0

    await _eventually(acknowledged)
    dead = await buses["operator"].js.get_last_msg(bus.stream("DLQ"), bus.subject(f"dlq.{consumer.subject}"))
    assert dead.data == f"bad-{run}".encode()


async def test_the_gateway_reads_live_events_and_its_rate_limit_bucket(buses: dict[str, Bus]) -> None:
    gateway, received = buses["gateway"], asyncio.Queue[str]()

    async def on_message(msg: Msg) -> None:
        await received.put(gateway.logical(msg.subject))

    for subject in live.EVENTS:
        await gateway.nc.subscribe(gateway.subject(subject), cb=on_message)
    for subject in live.EVENTS:
        await buses[_publisher(subject)].publish(subject, b"live", msg_id=str(uuid.uuid4()))
    async with asyncio.timeout(5):
        assert {await received.get() for _ in live.EVENTS} == set(live.EVENTS)

    kv = await gateway.key_value(ratelimits.BUCKET)
    revision = await kv.create("login.k", b"1")
    await kv.update("login.k", b"2", last=revision)
    entry = await kv.get("login.k")
    assert entry.value == b"2"
    await kv.purge("login.k")


async def _stored(operator: Bus) -> dict[str, int]:
    return {name: (await operator.js.stream_info(operator.stream(name))).state.messages for name in STREAMS}


@pytest.mark.parametrize("workload", WORKLOADS)
async def test_publishing_another_workloads_events_is_refused(
    server: Server, buses: dict[str, Bus], workload: str
) -> None:
    before = await _stored(buses["operator"])
    raw = await _raw(server, workload)
    try:
        foreign = [s for s in PUBLISHED if s not in nats_auth.ROLES[workload].publishes]
        for subject in (*foreign, "dlq.catalog.changed", "anything"):
            await raw.nc.publish(namespaced_subject(NAMESPACE, subject), b"forged")
            assert await raw.refused("Publish", namespaced_subject(NAMESPACE, subject))
    finally:
        await raw.nc.close()
    assert await _stored(buses["operator"]) == before


@pytest.mark.parametrize("workload", WORKLOADS)
async def test_subscribing_outside_its_allow_list_is_refused(server: Server, workload: str) -> None:
    role = nats_auth.ROLES[workload]
    others = [w for w in WORKLOADS if w != workload]
    forbidden = [
        # Consumers read their streams through durables, never by listening.
        *(namespaced_subject(NAMESPACE, s) for s in PUBLISHED if not _covered(s, role.listens)),
        ">",
        "_INBOX.>",
        f"{inbox_prefix(others[0])}.>",
        "$JS.API.>",
    ]
    raw = await _raw(server, workload)
    try:
        for subject in forbidden:
            await raw.nc.subscribe(subject)
            assert await raw.refused("Subscription", subject)
    finally:
        await raw.nc.close()


def _refused_requests(workload: str) -> list[str]:
    """JetStream requests outside `workload`'s grants: other workloads' consumers, and streams it may
    not delete, purge, or read message by message."""
    events, jobs = (namespaced_stream(NAMESPACE, name) for name in ("EVENTS", "JOBS"))
    requests = [
        f"$JS.API.CONSUMER.DURABLE.CREATE.{events}.spy",
        f"$JS.API.CONSUMER.CREATE.{jobs}.spy",
        f"$JS.API.STREAM.MSG.GET.{events}",
    ]
    if workload != "operator":
        requests += [f"$JS.API.STREAM.DELETE.{events}", f"$JS.API.STREAM.PURGE.{jobs}"]
    mine = {c.durable for c in nats_auth.ROLES[workload].consumes}
    for stream, durable in (
        (events, "ledger-settlement"),
        (events, "workflow-steps"),
        (jobs, "generation-worker-text"),
    ):
        if durable not in mine:
            requests += [
                f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{durable}",
                f"$JS.ACK.{stream}.{durable}.1.1.1.1.0",
            ]
    return [r for r in requests if not (workload == "operator" and r.startswith("$JS.API."))]


@pytest.mark.parametrize("workload", WORKLOADS)
async def test_jetstream_requests_outside_its_grants_are_refused(server: Server, workload: str) -> None:
    raw = await _raw(server, workload)
    try:
        for subject in _refused_requests(workload):
            await raw.nc.publish(subject, b"{}", reply=raw.nc.new_inbox())
            assert await raw.refused("Publish", subject)
    finally:
        await raw.nc.close()


async def test_the_operator_manages_streams_but_publishes_no_event(buses: dict[str, Bus]) -> None:
    operator = buses["operator"]
    info = await operator.js.stream_info(operator.stream("EVENTS"))
    assert info.config.name == namespaced_stream(NAMESPACE, "EVENTS")
    with pytest.raises(Exception):  # noqa: B017, PT011 — refused: no acknowledgement ever comes
        await asyncio.wait_for(operator.publish("balances.changed", b"forged", msg_id="op"), 1)


async def test_a_plaintext_connection_is_refused(server: Server) -> None:
    host, port = server.url.split("://")[-1].split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        info = await reader.readline()
        assert b'"tls_required":true' in info
        writer.write(b'CONNECT {"verbose":false}\r\nPING\r\n')
        await writer.drain()
        # The server expected a TLS handshake: it closes the connection without a PONG.
        assert await asyncio.wait_for(reader.read(), 5) == b""
    finally:
        writer.close()


@pytest.mark.parametrize(
    ("client", "refusal"),
    [
        ("no certificate", "client didn't provide a certificate"),
        ("another CA", "certificate signed by unknown authority (CN=ledger"),
        ("the server's own certificate", "authentication error"),
    ],
)
async def test_a_connection_without_a_workload_certificate_from_the_ca_is_refused(
    server: Server, client: str, refusal: str
) -> None:
    certificate = {
        "no certificate": None,
        "another CA": server.foreign,
        "the server's own certificate": server.pki / nats_auth.SERVER,
    }[client]
    nc = NatsClient()

    async def quiet(exc: Exception) -> None:
        pass

    logged = server.log.read_text()
    # TLS refusals reach the client as an SSL error or a reset, depending on when the server's alert comes.
    with pytest.raises((OSError, nats.errors.Error)):
        await nc.connect(
            server.url,
            tls=_context(server, certificate),
            allow_reconnect=False,
            connect_timeout=2,
            error_cb=quiet,
        )
    assert not nc.is_connected

    async def logged_refusal() -> bool:
        return refusal in server.log.read_text().removeprefix(logged)

    await _eventually(logged_refusal)


def _issue_with(server: Server, names: list[x509.GeneralName], directory: Path) -> Path:
    """A certificate from the stack's CA naming only `names` (cert-manager issues client-only workloads,
    the gateway's for one, with a URI SAN and no DNS name)."""
    authority = Authority.load_or_create(server.pki)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(authority.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .sign(authority.key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "ca.crt").write_bytes(authority.pem)
    (directory / "tls.crt").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    (directory / "tls.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return directory


async def test_the_identity_is_the_uri_san_not_a_dns_name(server: Server, tmp_path: Path) -> None:
    client_only = _issue_with(
        server, [x509.UniformResourceIdentifier(spiffe_id("gateway"))], tmp_path / "uri"
    )
    bus = await Bus.connect(server.url, namespace=NAMESPACE, name="test-uri", tls=TlsFiles(client_only))
    try:
        assert await bus.healthy()
    finally:
        await bus.close()

    dns_only = _issue_with(server, [x509.DNSName("ledger")], tmp_path / "dns")
    logged = server.log.read_text()
    with pytest.raises(nats.errors.Error, match="Authorization Violation"):
        await NatsClient().connect(
            server.url, tls=_context(server, dns_only), allow_reconnect=False, connect_timeout=2
        )
    assert "authentication error" in server.log.read_text().removeprefix(logged)


def test_the_kubernetes_configuration_is_the_generated_one_and_loads(server: Server, tmp_path: Path) -> None:
    manifests = yaml.safe_load_all((ROOT / "deploy" / "k8s" / "base" / "nats.yaml").read_text())
    config = next(m for m in manifests if m["kind"] == "ConfigMap")["data"]["nats.conf"]
    mounted = nats_auth.KUBERNETES_TLS_DIR
    assert nats_auth.server_config(mounted) in config, "regenerate with `python -m devkit.nats_auth`"
    assert textwrap.indent(nats_auth.route_config(mounted), "  ") in config

    local = (
        config.replace(str(mounted), str(server.pki / nats_auth.SERVER))
        .replace("/var/run/nats", str(tmp_path))
        .replace('"/data"', f'"{tmp_path / "data"}"')
    )
    (tmp_path / "nats.conf").write_text(local)
    checked = subprocess.run(
        [nats_server_binary(), "-t", "-c", str(tmp_path / "nats.conf")],
        env={**os.environ, "SERVER_NAME": "nats-0"},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert checked.returncode == 0, checked.stderr
