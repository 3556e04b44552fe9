"""Only the gateway is reachable from outside; each database only from its owner; NATS only from the
services; each gRPC service only from the workloads `kit.access.ACCESS` grants one of its RPCs; the
plaintext health ports from no pod. Checked by evaluating the rendered NetworkPolicies for every pair of
pods, ports included."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from kit import access
from kit.settings import SERVICES
from tests.deploy.conftest import OVERLAYS, Manifest, named, of_kind, pod_spec

INGRESS_CONTROLLER = "ingress-nginx"
OPERATOR = "cnpg-system"
ELSEWHERE = "some-other-team"
DB_OWNERS = {service: {service} for service in SERVICES} | {"generation": {"generation", "generation-worker"}}


@dataclass(frozen=True)
class Pod:
    name: str
    namespace: str
    labels: dict[str, str] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)

    def __hash__(self) -> int:
        return hash((self.name, self.namespace))


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    if any(labels.get(key) != value for key, value in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator, values = expression["key"], expression["operator"], expression.get("values", [])
        present = key in labels
        if operator == "In" and not (present and labels[key] in values):
            return False
        if operator == "NotIn" and present and labels[key] in values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
    return True


def peer_matches(peer: dict[str, Any], source: Pod, namespace: str) -> bool:
    assert "ipBlock" not in peer, "ipBlock peers are not used here"
    namespace_labels = {"kubernetes.io/metadata.name": source.namespace}
    if "namespaceSelector" in peer:
        if not selects(peer["namespaceSelector"], namespace_labels):
            return False
    elif source.namespace != namespace:
        return False
    return "podSelector" not in peer or selects(peer["podSelector"], source.labels)


def allowed(policies: list[Manifest], source: Pod, target: Pod, port: int) -> bool:
    applying = [
        p
        for p in policies
        if p["metadata"]["namespace"] == target.namespace
        and "Ingress" in p["spec"].get("policyTypes", ["Ingress"])
        and selects(p["spec"]["podSelector"], target.labels)
    ]
    if not applying:
        return True
    for policy in applying:
        for rule in policy["spec"].get("ingress", []):
            peers = rule.get("from")
            if peers and not any(peer_matches(peer, source, target.namespace) for peer in peers):
                continue
            ports = rule.get("ports")
            if not ports:
                return True
            for entry in ports:
                wanted = entry["port"]
                if (target.ports.get(wanted) if isinstance(wanted, str) else wanted) == port:
                    return True
    return False


def pods_of(manifests: list[Manifest]) -> list[Pod]:
    pods = []
    for workload in of_kind(manifests, "Deployment", "StatefulSet"):
        ports = {
            p["name"]: p["containerPort"]
            for container in pod_spec(workload)["containers"]
            for p in container.get("ports", [])
        }
        labels = workload["spec"]["template"]["metadata"]["labels"]
        pods.append(Pod(workload["metadata"]["name"], workload["metadata"]["namespace"], labels, ports))
    for cluster in of_kind(manifests, "Cluster"):
        # The labels and ports CloudNativePG gives its instance pods.
        name = cluster["metadata"]["name"]
        labels = {"cnpg.io/cluster": name, "cnpg.io/podRole": "instance"}
        ports = {"postgresql": 5432, "metrics": 9187, "status": 8000}
        pods.append(Pod(f"{name}-1", cluster["metadata"]["namespace"], labels, ports))
    for pooler in of_kind(manifests, "Pooler"):
        # The labels and ports CloudNativePG gives a pooler's PgBouncer pods.
        name = pooler["metadata"]["name"]
        labels = {
            "cnpg.io/cluster": pooler["spec"]["cluster"]["name"],
            "cnpg.io/poolerName": name,
            "cnpg.io/podRole": "pooler",
        }
        pods.append(Pod(name, pooler["metadata"]["namespace"], labels, {"pgbouncer": 5432, "metrics": 9127}))
    return pods


def reachable(manifests: list[Manifest], sources: list[Pod]) -> set[tuple[str, str, int]]:
    """Every (source, target, port) that the policies allow, over every port of every other pod."""
    policies = of_kind(manifests, "NetworkPolicy")
    return {
        (source.name, target.name, port)
        for target in pods_of(manifests)
        for port in target.ports.values()
        for source in sources
        if source.name != target.name and allowed(policies, source, target, port)
    }


def outsiders() -> list[Pod]:
    return [Pod(namespace, namespace) for namespace in (INGRESS_CONTROLLER, OPERATOR, ELSEWHERE)]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_from_outside_only_the_gateway_is_reachable(
    rendered: dict[str, list[Manifest]], overlay: str
) -> None:
    manifests = rendered[overlay]
    from_outside = reachable(manifests, outsiders())
    assert {r for r in from_outside if r[0] == INGRESS_CONTROLLER} == {(INGRESS_CONTROLLER, "gateway", 8000)}
    assert {r for r in from_outside if r[0] == ELSEWHERE} == set()
    # The operator reaches its databases (instance manager, PostgreSQL) and poolers, nothing of Atelier's.
    operator = {target for source, target, _ in from_outside if source == OPERATOR}
    assert operator == {f"{service}-db-{pod}" for service in SERVICES for pod in ("1", "pooler")}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_database_is_reachable_only_from_its_owner(
    rendered: dict[str, list[Manifest]], overlay: str
) -> None:
    manifests = rendered[overlay]
    namespace = manifests[-1]["metadata"]["namespace"]
    # One-off migration Jobs (docs/operations.md) are labelled `<service>-migrate`.
    jobs = [Pod(f"{s}-migrate", namespace, {"app.kubernetes.io/name": f"{s}-migrate"}) for s in SERVICES]
    inside = reachable(manifests, pods_of(manifests) + jobs)
    for service, owners in DB_OWNERS.items():
        # The owner's pods serve through the pooler and migrate (init container, or a Job) directly.
        database, pooler = f"{service}-db-1", f"{service}-db-pooler"
        clients = {source for source, target, port in inside if target == database and port == 5432}
        assert clients == owners | {f"{service}-migrate", pooler}, f"{database} reachable from {clients}"
        clients = {source for source, target, port in inside if target == pooler and port == 5432}
        assert clients == owners | {f"{service}-migrate", database}, f"{pooler} reachable from {clients}"
    # And the collector reads the databases' metrics, nothing else of them.
    assert {(t, p) for s, t, p in inside if s == "otel-collector" and t.endswith("-db-1")} == {
        (f"{service}-db-1", 9187) for service in SERVICES
    }


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_nats_and_grpc_are_reachable_only_from_atelier_processes(
    rendered: dict[str, list[Manifest]], overlay: str
) -> None:
    manifests = rendered[overlay]
    inside = reachable(manifests, pods_of(manifests))
    processes = {*SERVICES, "generation-worker", "gateway"}
    assert {s for s, t, p in inside if t == "nats" and p == 4222} == processes
    pods = {pod.name: pod for pod in pods_of(manifests)}
    for service in SERVICES:
        # The workloads the table lets call one of its RPCs (the operator runs outside the cluster).
        granted = {workload for grants in access.ACCESS[service].values() for workload in grants}
        granted.discard(access.OPERATOR)
        grpc_clients = {s for s, t, p in inside if t == service and p == pods[service].ports["grpc"]}
        assert grpc_clients == granted, service
        assert "gateway" in grpc_clients, "the gateway's /readyz asks every service's health"
        assert {p for s, t, p in inside if t == service} <= {pods[service].ports["grpc"], 9090}, service
    # The plaintext health ports are the kubelet's (from the node, which policies always admit) alone.
    health = {pods[name].ports["health"] for name in (*SERVICES, "generation-worker")}
    assert health == {50080}
    assert not {(s, t) for s, t, p in inside if p in health}
    # Nobody but Atelier's processes sends spans to the collector; nothing reaches the worker but scrapes.
    assert {s for s, t, p in inside if t == "otel-collector"} == processes
    assert {(s, p) for s, t, p in inside if t == "generation-worker"} == {("otel-collector", 9090)}


def test_the_evaluator_can_say_no(rendered: dict[str, list[Manifest]]) -> None:
    """Without the policies everything is open: the checks above depend on them, not on the evaluator."""
    manifests = [m for m in rendered["prod"] if m["kind"] != "NetworkPolicy"]
    assert (ELSEWHERE, "ledger-db-1", 5432) in reachable(manifests, outsiders())


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_only_the_gateway_service_is_exposed(rendered: dict[str, list[Manifest]], overlay: str) -> None:
    manifests = rendered[overlay]
    (ingress,) = of_kind(manifests, "Ingress")
    backends = {
        (path["backend"]["service"]["name"], path["backend"]["service"]["port"]["name"])
        for rule in ingress["spec"]["rules"]
        for path in rule["http"]["paths"]
    }
    assert backends == {("gateway", "http")}
    # The operations port (/metrics, /readyz) is on no Service: only the kubelet and the collector reach it.
    assert [p["name"] for p in named(manifests, "Service", "gateway")["spec"]["ports"]] == ["http"]
    assert "defaultBackend" not in ingress["spec"]
    for service in of_kind(manifests, "Service"):
        assert service["spec"].get("type", "ClusterIP") == "ClusterIP", service["metadata"]["name"]
    if overlay == "prod":
        assert ingress["spec"]["tls"][0]["hosts"] == [ingress["spec"]["rules"][0]["host"]]
