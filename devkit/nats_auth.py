"""Who may publish and subscribe what on NATS: one user per workload, its subject permissions derived from
the event catalog, and the nats-server configuration that enforces them over TLS.

A client is identified by its certificate (`tls { verify_and_map: true }`): each user is named by a
workload's identity `spiffe://atelier/<workload>` (kit.tls.spiffe_id), the URI SAN every workload
certificate carries (devkit.pki, cert-manager). nats-server tries a verified certificate's DNS SANs, then
its URI SANs against the user names; no user is named like a DNS name, so the URI decides, for the
certificates with DNS names (servers) and without (clients only) alike. No password exists.

What is not allowed is refused (nats-server's allow lists deny everything else): a refused publish is
dropped and a refused subscription never delivers, and the client is told "Permissions Violation".

Each workload may
- publish its own events (`services/*/events.py`) and, for each stream it consumes, that stream's
  dead letters (`dlq.<subject>`, kit/bus.py);
- on the JetStream API: look up, create and update the project's streams (every service process runs
  `Bus.ensure_streams` at start, so this is granted to each; a service can therefore rewrite a stream's
  limits but never delete or purge it); create, look up and pull from its own durable consumers, and
  acknowledge their messages; the account's info (`Bus.healthy`);
- subscribe to its own inboxes `_INBOX.<workload>.>` (kit.bus.inbox_prefix): JetStream answers, publish
  acknowledgements and pulled messages come there. A shared `_INBOX.>` would let any workload read the
  messages another one pulls;
- and, for the gateway, read the person-facing events with plain subscriptions (gateway/live.py) and use
  the RATELIMITS key-value bucket (gateway/ratelimits.py).
The generation service and its worker share one outbox (the generation database), and either relay may
send any of its rows: both publish generation's subjects. The operator (ops tooling, test teardown) has
the whole JetStream API (streams are created, inspected, deleted there) and reads every stream's subjects;
it publishes no event.

Subjects and stream names carry the namespace prefix (kit.bus.namespaced_subject / namespaced_stream).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devkit.pki import Authority
from gateway import live, ratelimits
from kit.access import WORKLOADS
from kit.bus import STREAMS, inbox_prefix, namespaced_stream, namespaced_subject
from kit.tls import spiffe_id
from services.catalog import events as catalog_events
from services.generation import events as generation_events
from services.ledger import events as ledger_events
from services.ledger.service import values as ledger_values
from services.workflow import events as workflow_events

# The nats-server's own identity: its certificate's files are `pki/nats/`, and the user cluster routes
# authenticate as is its URI SAN.
SERVER = "nats"
# Where the Kubernetes StatefulSet mounts the cert-manager Secret `nats-tls` (deploy/k8s/base/nats.yaml).
KUBERNETES_TLS_DIR = Path("/etc/nats-tls")


@dataclass(frozen=True)
class Consumer:
    """A durable pull consumer: its name, the logical subject it filters and its stream."""

    durable: str
    subject: str
    stream: str = "EVENTS"


@dataclass(frozen=True)
class Role:
    publishes: tuple[str, ...] = ()
    consumes: tuple[Consumer, ...] = ()
    # Plain (core NATS) subscriptions: every replica sees every message, nothing is stored.
    listens: tuple[str, ...] = ()
    ensures_streams: bool = True
    key_value: tuple[str, ...] = ()
    operates: bool = False


_GENERATION = (
    *generation_events.JOB_SUBJECTS.values(),
    generation_events.PROGRESS,
    generation_events.COMPLETED,
)

ROLES: dict[str, Role] = {
    "gateway": Role(listens=tuple(live.EVENTS), ensures_streams=False, key_value=(ratelimits.BUCKET,)),
    "accounts": Role(),
    "catalog": Role(publishes=(catalog_events.CATALOG_CHANGED,)),
    "ledger": Role(
        publishes=(ledger_values.BALANCES_CHANGED, ledger_values.PAYMENTS_COMPLETED),
        consumes=(
            Consumer(ledger_events.SETTLEMENT_CONSUMER, ledger_events.TASKS_COMPLETED),
            Consumer(ledger_events.RUN_REFUND_CONSUMER, ledger_events.RUNS_COMPLETED),
        ),
    ),
    "generation": Role(publishes=_GENERATION),
    "generation-worker": Role(
        publishes=_GENERATION,
        # services/generation/worker.py names its consumers `generation-worker-<kind>`.
        consumes=tuple(
            Consumer(f"generation-worker-{kind}", subject, "JOBS")
            for kind, subject in generation_events.JOB_SUBJECTS.items()
        ),
    ),
    "workflow": Role(
        publishes=(
            workflow_events.RUNS_STARTED,
            workflow_events.RUNS_PROGRESS,
            workflow_events.RUNS_COMPLETED,
        ),
        consumes=(Consumer(workflow_events.STEPS_CONSUMER, workflow_events.TASKS_COMPLETED),),
    ),
    "operator": Role(
        listens=tuple(subject for spec in STREAMS.values() for subject in spec.subjects), operates=True
    ),
}
assert set(ROLES) == set(WORKLOADS), "every workload with a certificate has a NATS role"


@dataclass(frozen=True)
class Permissions:
    publish: list[str] = field(default_factory=list)
    subscribe: list[str] = field(default_factory=list)


def permissions(workload: str, namespace: str = "") -> Permissions:
    """`workload`'s allow lists in `namespace`."""
    role = ROLES[workload]

    def subject(logical: str) -> str:
        return namespaced_subject(namespace, logical)

    def stream(name: str) -> str:
        return namespaced_stream(namespace, name)

    publish = [subject(s) for s in role.publishes]
    if role.operates:
        publish.append("$JS.API.>")
    else:
        publish.append("$JS.API.INFO")
    if role.ensures_streams and not role.operates:
        operations = ("INFO", "CREATE", "UPDATE")
        publish += [f"$JS.API.STREAM.{op}.{stream(name)}" for name in STREAMS for op in operations]
    for consumer in role.consumes:
        at = f"{stream(consumer.stream)}.{consumer.durable}"
        publish += [
            subject(f"dlq.{consumer.subject}"),
            f"$JS.API.CONSUMER.INFO.{at}",
            f"$JS.API.CONSUMER.DURABLE.CREATE.{at}",
            f"$JS.API.CONSUMER.CREATE.{at}",
            f"$JS.API.CONSUMER.CREATE.{at}.>",
            f"$JS.API.CONSUMER.MSG.NEXT.{at}",
            f"$JS.ACK.{at}.>",
        ]
    for bucket in role.key_value:
        kv = f"KV_{stream(bucket)}"
        publish += [
            f"$JS.API.STREAM.INFO.{kv}",
            f"$JS.API.STREAM.CREATE.{kv}",
            f"$JS.API.STREAM.MSG.GET.{kv}",
            f"$JS.API.DIRECT.GET.{kv}",
            f"$JS.API.DIRECT.GET.{kv}.>",
            f"$KV.{stream(bucket)}.>",
        ]
    subscribe = [f"{inbox_prefix(workload)}.>", *(subject(s) for s in role.listens)]
    return Permissions(publish, subscribe)


def authorization(namespace: str = "") -> dict[str, Any]:
    """The `authorization` block: one user per workload, named as its certificate's URI SAN."""
    users = []
    for workload in WORKLOADS:
        allowed = permissions(workload, namespace)
        users.append(
            {
                "user": spiffe_id(workload),
                "permissions": {
                    "publish": {"allow": allowed.publish},
                    "subscribe": {"allow": allowed.subscribe},
                },
            }
        )
    return {"users": users}


def server_files(pki: Path) -> Path:
    """The server's certificate files under `pki/nats/`, from the CA under `pki` (made if missing),
    issued again when missing or near their end."""
    authority = Authority.load_or_create(pki)
    directory = pki / SERVER
    if authority.needs_issuing(directory):
        authority.issue(SERVER, directory)
    return directory


def tls_block(directory: Path, *, map_users: bool) -> dict[str, Any]:
    """A `tls` block from a cert-manager-style directory (ca.crt, tls.crt, tls.key): the peer must show a
    certificate from that CA, mapped to a user when `map_users`."""
    block: dict[str, Any] = {
        "cert_file": str(directory / "tls.crt"),
        "key_file": str(directory / "tls.key"),
        "ca_file": str(directory / "ca.crt"),
        "timeout": 3,
    }
    block["verify_and_map" if map_users else "verify"] = True
    return block


def server_config(tls_directory: Path, namespace: str = "") -> str:
    """The client side of a nats-server configuration: TLS with certificate identities, and the users."""
    tls = tls_block(tls_directory, map_users=True)
    return _render({"tls": tls, "authorization": authorization(namespace)})


def route_config(tls_directory: Path) -> str:
    """What goes inside a `cluster { }` block: routes over mutual TLS, and only a peer whose certificate
    names the server (`SERVER`) may join as a route (a workload's certificate, from the same CA, may not)."""
    route = {"user": spiffe_id(SERVER)}
    return _render({"tls": tls_block(tls_directory, map_users=True), "authorization": route})


def _render(blocks: dict[str, Any]) -> str:
    # nats-server's configuration format reads JSON values.
    return "".join(f"{name}: {json.dumps(value, indent=2)}\n" for name, value in blocks.items())


if __name__ == "__main__":
    # What deploy/k8s/base/nats.yaml's nats.conf holds (tests/security/test_nats_permissions.py checks it).
    sys.stdout.write(server_config(KUBERNETES_TLS_DIR) + route_config(KUBERNETES_TLS_DIR))
