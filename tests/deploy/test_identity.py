"""Workload identity in the cluster: one cert-manager Certificate per workload of `kit.access.WORKLOADS`,
named as `kit.access.ACCESS` names it, each mounted in its own Deployment only, as a directory (so that
renewals reach the files, `kit.tls`); the end-user token's signing key in the gateway alone."""

from __future__ import annotations

import pytest

from kit import access, tls
from tests.deploy.conftest import (
    OVERLAYS,
    TLS_DIR,
    USER_TOKEN_DIR,
    Manifest,
    generated,
    named,
    of_kind,
    pod_spec,
)

CA = "atelier-ca"
NAMESPACES = {"dev": "atelier-dev", "prod": "atelier"}
# Every workload but the operator's tools, which run outside the cluster.
IN_CLUSTER = set(access.WORKLOADS) - {access.OPERATOR}
HOURS = {"h": 1.0, "m": 1 / 60}


def hours(duration: str) -> float:
    return float(duration[:-1]) * HOURS[duration[-1]]


NATS = "nats"


def workload_certificates(manifests: list[Manifest]) -> dict[str, Manifest]:
    """The Atelier processes' certificates: not the CA's, not the NATS server's (nats.yaml)."""
    certificates = of_kind(manifests, "Certificate")
    return {
        c["metadata"]["name"]: c["spec"]
        for c in certificates
        if not c["spec"].get("isCA") and c["metadata"]["name"] != NATS
    }


def atelier_processes(manifests: list[Manifest]) -> list[Manifest]:
    return [d for d in of_kind(manifests, "Deployment") if d["metadata"]["name"] in IN_CLUSTER]


def environment(manifests: list[Manifest], container: Manifest) -> dict[str, str]:
    """What the container's process reads: the shared ConfigMap, then its own literal variables."""
    config: dict[str, str] = generated(manifests, "ConfigMap", "atelier-config")["data"]
    return config | {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}


def secret_mounts(deployment: Manifest, container: Manifest) -> dict[str, tuple[Manifest, Manifest]]:
    """mount path -> (mount, secret volume source) for each Secret the container mounts."""
    volumes = {v["name"]: v for v in pod_spec(deployment).get("volumes", [])}
    return {
        mount["mountPath"]: (mount, volumes[mount["name"]]["secret"])
        for mount in container.get("volumeMounts", [])
        if "secret" in volumes[mount["name"]]
    }


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_one_certificate_per_workload_of_the_table(rendered: dict[str, list[Manifest]], overlay: str) -> None:
    certificates = workload_certificates(rendered[overlay])
    assert set(certificates) == IN_CLUSTER
    # NATS has an identity of its own (deploy/k8s/base/nats.yaml): only it may join as a route.
    nats = [c["spec"] for c in of_kind(rendered[overlay], "Certificate") if c["metadata"]["name"] == NATS]
    assert [spec["uris"] for spec in nats] == [[tls.spiffe_id(NATS)]]
    # Every workload the table grants a call to, and every service it guards, has its identity.
    callers = {w for methods in access.ACCESS.values() for grants in methods.values() for w in grants}
    assert callers - {access.OPERATOR} <= set(certificates)
    assert set(access.ACCESS) <= set(certificates)
    for workload, spec in certificates.items():
        assert spec["uris"] == [tls.spiffe_id(workload)], workload
        assert spec["secretName"] == f"{workload}-tls"
        assert spec["issuerRef"] == {"group": "cert-manager.io", "kind": "Issuer", "name": CA}
        assert spec["privateKey"] == {
            "algorithm": "ECDSA",
            "size": 256,
            "encoding": "PKCS8",
            "rotationPolicy": "Always",
        }
        assert {"server auth", "client auth", "digital signature"} <= set(spec["usages"]), workload
        assert not spec.get("isCA")
        assert 0 < hours(spec["renewBefore"]) < hours(spec["duration"]) / 2, workload


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_service_certificate_names_the_service_clients_dial(
    rendered: dict[str, list[Manifest]], overlay: str
) -> None:
    """A client checks the server's certificate against the service's name (`kit.grpc_client`: the
    `ssl_target_name_override` is the peer's name, e.g. `ledger`), the same name as its Service."""
    manifests = rendered[overlay]
    certificates = workload_certificates(manifests)
    namespace = NAMESPACES[overlay]
    for service in access.ACCESS:
        assert named(manifests, "Service", service)["spec"]["ports"][0]["name"] == "grpc"
        assert certificates[service]["dnsNames"] == [
            service,
            f"{service}.{namespace}.svc",
            f"{service}.{namespace}.svc.cluster.local",
        ]
    for client_only in IN_CLUSTER - set(access.ACCESS):
        assert "dnsNames" not in certificates[client_only], client_only


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_ca_is_the_namespace_s_own(rendered: dict[str, list[Manifest]], overlay: str) -> None:
    manifests = rendered[overlay]
    issuers = {i["metadata"]["name"]: i["spec"] for i in of_kind(manifests, "Issuer")}
    (authority,) = [c for c in of_kind(manifests, "Certificate") if c["spec"].get("isCA")]
    spec = authority["spec"]
    assert issuers[spec["issuerRef"]["name"]] == {"selfSigned": {}}
    assert issuers[CA] == {"ca": {"secretName": spec["secretName"]}}
    # Renewed with the same key: certificates issued before and after a renewal trust each other.
    assert spec["privateKey"]["rotationPolicy"] == "Never"
    assert hours(spec["duration"]) >= 5 * 365 * 24
    assert not of_kind(manifests, "ClusterIssuer")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_process_mounts_its_own_certificate_as_a_directory(
    rendered: dict[str, list[Manifest]], overlay: str
) -> None:
    manifests = rendered[overlay]
    certificate_secrets = {spec["secretName"] for spec in workload_certificates(manifests).values()}
    deployments = atelier_processes(manifests)
    assert {d["metadata"]["name"] for d in deployments} == IN_CLUSTER
    for deployment in deployments:
        name = deployment["metadata"]["name"]
        (container,) = pod_spec(deployment)["containers"]
        env = environment(manifests, container)
        assert env["ATELIER_GRPC_TLS_DIR"] == TLS_DIR
        mounts = secret_mounts(deployment, container)
        mount, secret = mounts[TLS_DIR]
        assert secret["secretName"] == f"{name}-tls", name
        assert not secret.get("optional"), "no pod starts without its identity, in dev either"
        assert mount["readOnly"] is True
        # The kubelet updates a Secret mounted as a directory; a subPath mount would keep the first files.
        assert "subPath" not in mount
        assert "subPathExpr" not in mount
        assert "items" not in secret, "ca.crt, tls.crt and tls.key, as cert-manager writes them"
        # No other workload's certificate, in any container of the pod.
        for other in [*pod_spec(deployment).get("initContainers", []), container]:
            others = {s["secretName"] for _, s in secret_mounts(deployment, other).values()}
            assert others & certificate_secrets <= {f"{name}-tls"}, name
    for workload in of_kind(manifests, "StatefulSet"):
        volumes = pod_spec(workload).get("volumes", [])
        assert not {v["secret"]["secretName"] for v in volumes if "secret" in v} & certificate_secrets


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_user_token_signing_key_is_in_the_gateway_alone(
    rendered: dict[str, list[Manifest]], overlay: str
) -> None:
    manifests = rendered[overlay]
    signers = set()
    for workload in of_kind(manifests, "Deployment", "StatefulSet"):
        for volume in pod_spec(workload).get("volumes", []):
            if volume.get("secret", {}).get("secretName") == "atelier-user-token":
                # Without `items` every key of the Secret would be projected, the signing key too.
                keys = {item["key"] for item in volume["secret"]["items"]}
                if "signing.pem" in keys:
                    signers.add(workload["metadata"]["name"])
    assert signers == {"gateway"}
    for deployment in atelier_processes(manifests):
        name = deployment["metadata"]["name"]
        (container,) = pod_spec(deployment)["containers"]
        env = environment(manifests, container)
        mount, secret = secret_mounts(deployment, container)[USER_TOKEN_DIR]
        assert not secret.get("optional"), name
        assert mount["readOnly"] is True
        assert "subPath" not in mount
        projected = {f"{USER_TOKEN_DIR}/{item['path']}" for item in secret["items"]}
        assert env["ATELIER_USER_TOKEN_PUBLIC_KEYS_FILE"] in projected, name
        if name == "gateway":
            assert env["ATELIER_USER_TOKEN_SIGNING_KEY_FILE"] in projected
        else:
            assert "ATELIER_USER_TOKEN_SIGNING_KEY_FILE" not in env, name
