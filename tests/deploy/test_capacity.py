"""The connection budget of every database holds at the largest scale the overlays allow.

Each service process talks to its database through the PgBouncer `Pooler` (transaction pooling) and
runs its migrations in an init container straight on the primary. For every database, at every
Deployment's largest size (the HorizontalPodAutoscaler's `maxReplicas`, else `replicas`) plus the
pods a rolling update adds (`maxSurge`):

- clients: pods × (ATELIER_DB_POOL_SIZE + ATELIER_DB_MAX_OVERFLOW + the connections a process opens
  outside its pool) fit in one pooler instance's `max_client_conn` (so one instance can carry them all
  while the others restart);
- server: pooler instances × (their server connections + their auth_query connection) + one direct
  connection per pod migrating at once + the operator's own fit in the Cluster's `max_connections`
  less `superuser_reserved_connections`.

docs/operations.md ("Capacity") shows the same numbers for prod; the test fails when they differ.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from urllib.parse import urlsplit

import pytest

from kit.settings import ServiceSettings
from tests.deploy.conftest import OVERLAYS, ROOT, Manifest, generated, of_kind, pod_spec

# Connections a process opens outside its SQLAlchemy pool: the outbox relay's own connection
# (kit/outbox.py), and for the ledger its fast lane's group commit (services/ledger/service/fast.py).
OUTSIDE_POOL = {"ledger": 2}
OUTSIDE_POOL_DEFAULT = 1
# The CloudNativePG instance manager's own connections (status, metrics, replication checks).
OPERATOR_CONNECTIONS = 10
# PostgreSQL's and PgBouncer's defaults for what the manifests leave unset.
POSTGRES_DEFAULTS = {"max_connections": 100, "superuser_reserved_connections": 3}
PGBOUNCER_DEFAULTS = {"max_client_conn": 100, "default_pool_size": 20, "reserve_pool_size": 0}


@dataclass(frozen=True)
class Budget:
    database: str
    clients: int  # client connections into one pooler instance, at most
    max_client_conn: int
    pooled: int  # server connections from all pooler instances
    direct: int  # migrate init containers running at once
    available: int  # max_connections - superuser_reserved_connections

    @property
    def used(self) -> int:
        return self.pooled + self.direct + OPERATOR_CONNECTIONS

    def holds(self) -> bool:
        return self.clients <= self.max_client_conn and self.used <= self.available

    def row(self) -> str:
        return (
            f"| `{self.database}` | {self.clients} | {self.max_client_conn} | {self.pooled} | {self.direct} "
            f"| {self.used} | {self.available} |"
        )


def most_pods(manifests: list[Manifest], deployment: Manifest) -> int:
    """The Deployment's largest size: its autoscaler's maximum, else its replica count."""
    name = deployment["metadata"]["name"]
    for hpa in of_kind(manifests, "HorizontalPodAutoscaler"):
        if hpa["spec"]["scaleTargetRef"]["name"] == name:
            maximum: int = hpa["spec"]["maxReplicas"]
            return maximum
    replicas: int = deployment["spec"].get("replicas", 1)
    return replicas


def surge(deployment: Manifest, pods: int) -> int:
    """Pods a rolling update runs on top of `pods` (maxSurge, 25% by default, rounded up)."""
    value = deployment["spec"].get("strategy", {}).get("rollingUpdate", {}).get("maxSurge", "25%")
    if isinstance(value, str):
        return math.ceil(pods * int(value.removesuffix("%")) / 100)
    return int(value)


def pods_at_most(manifests: list[Manifest], deployment: Manifest) -> int:
    """The Deployment at its largest, plus the pods a rolling update adds on top."""
    pods = most_pods(manifests, deployment)
    return pods + surge(deployment, pods)


def main_container(deployment: Manifest) -> Manifest:
    containers: list[Manifest] = pod_spec(deployment)["containers"]
    (container,) = containers
    return container


def connections_per_process(manifests: list[Manifest], deployment: Manifest, owner: str) -> int:
    config = generated(manifests, "ConfigMap", "atelier-config")["data"]
    env = config | {e["name"]: e["value"] for e in main_container(deployment)["env"] if "value" in e}
    fields = ServiceSettings.model_fields
    pool = int(env.get("ATELIER_DB_POOL_SIZE", fields["db_pool_size"].default))
    overflow = int(env.get("ATELIER_DB_MAX_OVERFLOW", fields["db_max_overflow"].default))
    return pool + overflow + OUTSIDE_POOL.get(owner, OUTSIDE_POOL_DEFAULT)


def database_url(deployment: Manifest) -> str:
    (url,) = [e for e in main_container(deployment)["env"] if e["name"] == "ATELIER_DATABASE_URL"]
    value: str = url["value"]
    return value


def clients_of(manifests: list[Manifest]) -> dict[str, list[Manifest]]:
    """The Deployments of each database's owner (those with a migrate init container), by owner."""
    owners: dict[str, list[Manifest]] = {}
    for deployment in of_kind(manifests, "Deployment"):
        for init in pod_spec(deployment).get("initContainers", []):
            if init["name"] == "migrate":
                owners.setdefault(init["args"][0].removeprefix("services."), []).append(deployment)
    return owners


def pooler_of(manifests: list[Manifest], owner: str) -> Manifest:
    (pooler,) = [p for p in of_kind(manifests, "Pooler") if p["spec"]["cluster"]["name"] == f"{owner}-db"]
    return pooler


def budget(manifests: list[Manifest], owner: str, deployments: list[Manifest]) -> Budget:
    pooler = pooler_of(manifests, owner)
    (cluster,) = [c for c in of_kind(manifests, "Cluster") if c["metadata"]["name"] == f"{owner}-db"]
    bouncer = PGBOUNCER_DEFAULTS | {k: int(v) for k, v in pooler["spec"]["pgbouncer"]["parameters"].items()}
    postgres = POSTGRES_DEFAULTS | {
        k: int(v) for k, v in cluster["spec"]["postgresql"]["parameters"].items() if k in POSTGRES_DEFAULTS
    }
    server_per_instance = bouncer.get("max_db_connections") or (
        bouncer["default_pool_size"] + bouncer["reserve_pool_size"]
    )
    pods = {d["metadata"]["name"]: pods_at_most(manifests, d) for d in deployments}
    return Budget(
        database=f"{owner}-db",
        clients=sum(
            pods[d["metadata"]["name"]] * connections_per_process(manifests, d, owner) for d in deployments
        ),
        max_client_conn=bouncer["max_client_conn"],
        # Each instance also holds one connection of its own for auth_query (the operator's auth_user).
        pooled=pooler["spec"].get("instances", 1) * (server_per_instance + 1),
        direct=sum(pods.values()),
        available=postgres["max_connections"] - postgres["superuser_reserved_connections"],
    )


def budgets(manifests: list[Manifest]) -> list[Budget]:
    return [
        budget(manifests, owner, deployments) for owner, deployments in sorted(clients_of(manifests).items())
    ]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_services_reach_their_database_through_its_pooler(
    rendered: dict[str, list[Manifest]], overlay: str
) -> None:
    manifests = rendered[overlay]
    owners = clients_of(manifests)
    assert set(owners) == {c["metadata"]["name"].removesuffix("-db") for c in of_kind(manifests, "Cluster")}
    for owner, deployments in owners.items():
        pooler = pooler_of(manifests, owner)
        (cluster,) = [c for c in of_kind(manifests, "Cluster") if c["metadata"]["name"] == f"{owner}-db"]
        initdb = cluster["spec"]["bootstrap"]["initdb"]
        assert pooler["metadata"]["name"] != cluster["metadata"]["name"]
        assert pooler["spec"]["type"] == "rw"
        bouncer = pooler["spec"]["pgbouncer"]
        assert bouncer["poolMode"] == "transaction"
        # psycopg keeps up to 100 prepared statements per connection; PgBouncer must track at least as many.
        assert int(bouncer["parameters"]["max_prepared_statements"]) >= 100
        for deployment in deployments:
            url = urlsplit(database_url(deployment))
            assert (url.hostname, url.port) == (pooler["metadata"]["name"], 5432)
            assert (url.username, url.path.lstrip("/")) == (initdb["owner"], initdb["database"])
            assert url.password is None, "the password comes from the Secret, never the manifest"
            (password,) = [e for e in main_container(deployment)["env"] if e["name"] == "PGPASSWORD"]
            assert password["valueFrom"]["secretKeyRef"] == {"name": f"{owner}-db-app", "key": "password"}
            # Migrations take a session-level advisory lock: they connect to the primary directly.
            (migrate,) = pod_spec(deployment)["initContainers"]
            (direct,) = [e for e in migrate["env"] if e["name"] == "ATELIER_DATABASE_URL"]
            assert direct["valueFrom"]["secretKeyRef"] == {"name": f"{owner}-db-app", "key": "uri"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_connection_budget_holds_at_the_largest_scale(
    rendered: dict[str, list[Manifest]], overlay: str
) -> None:
    found = budgets(rendered[overlay])
    assert len(found) == len(of_kind(rendered[overlay], "Cluster"))
    over = [b for b in found if not b.holds()]
    assert not over, "\n".join(b.row() for b in over)


def test_the_budget_can_say_no(rendered: dict[str, list[Manifest]]) -> None:
    """More workers than the pooler admits, or poolers that ask for more than PostgreSQL allows, fail."""
    manifests = copy.deepcopy(rendered["prod"])
    (hpa,) = of_kind(manifests, "HorizontalPodAutoscaler")
    hpa["spec"]["maxReplicas"] = 100
    assert not {b.database: b for b in budgets(manifests)}["generation-db"].holds()
    manifests = copy.deepcopy(rendered["prod"])
    pooler_of(manifests, "ledger")["spec"]["pgbouncer"]["parameters"]["max_db_connections"] = "100"
    assert not {b.database: b for b in budgets(manifests)}["ledger-db"].holds()


def test_operations_doc_shows_the_prod_budget(rendered: dict[str, list[Manifest]]) -> None:
    operations = (ROOT / "docs" / "operations.md").read_text()
    missing = [b.row() for b in budgets(rendered["prod"]) if b.row() not in operations]
    assert not missing, "docs/operations.md, Capacity, should have these rows:\n" + "\n".join(missing)
