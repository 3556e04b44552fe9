"""Every overlay renders with `kubectl kustomize` and validates offline: built-in kinds with
`kubernetes-validate --strict`, custom resources (CloudNativePG, Barman Cloud, cert-manager) with the
schemas in crd_schemas.py; and every reference between objects resolves inside the rendered output."""

from __future__ import annotations

import copy
import subprocess
import sys
from typing import Any

import jsonschema
import pytest
from kubernetes_validate import utils as kubernetes_validate

from tests.deploy.conftest import K8S, OVERLAYS, Manifest, generated, of_kind, pod_spec
from tests.deploy.crd_schemas import SCHEMAS

# The oldest Kubernetes the manifests target (native gRPC probes are GA since 1.27, the preStop
# `sleep` action is on by default since 1.30).
KUBERNETES_VERSION = "1.33"
NAMESPACES = {"dev": "atelier-dev", "prod": "atelier"}
CLUSTER_SCOPED = {"Namespace"}


def validate(manifest: Manifest) -> None:
    """Raise when `manifest` is not valid: strict schema for built-in kinds, ours for custom ones."""
    schema = SCHEMAS.get((manifest["apiVersion"], manifest["kind"]))
    if schema is not None:
        jsonschema.Draft202012Validator(schema).validate(manifest)
        return
    api_group = manifest["apiVersion"].rpartition("/")[0]
    assert "." not in api_group or api_group.endswith(".k8s.io"), (
        f"{manifest['apiVersion']} {manifest['kind']} is a custom resource without a schema in crd_schemas.py"
    )
    kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_validates(rendered: dict[str, list[Manifest]], overlay: str) -> None:
    manifests = rendered[overlay]
    assert len(manifests) > 40
    errors = []
    for manifest in manifests:
        try:
            validate(manifest)
        except Exception as error:  # collect them all, one report
            errors.append(f"{manifest['kind']}/{manifest['metadata']['name']}: {error}")
    assert not errors, "\n".join(errors)


def test_the_cli_agrees(kubectl: str, tmp_path: Any) -> None:
    """The same check as CI's command line: kubectl kustomize | kubernetes-validate --strict."""
    for overlay in OVERLAYS:
        out = tmp_path / f"{overlay}.yaml"
        rendered = subprocess.run(
            [kubectl, "kustomize", str(K8S / "overlays" / overlay)],
            capture_output=True,
            text=True,
            check=True,
        )
        out.write_text(rendered.stdout)
        result = subprocess.run(
            [sys.executable, "-m", "kubernetes_validate", "--strict", "--quiet", "--no-warn",
             "-k", KUBERNETES_VERSION, str(out)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr


def test_validation_rejects_mistakes(rendered: dict[str, list[Manifest]]) -> None:
    """The validators above can fail: a misspelt field, a wrong type, a missing required CRD field."""
    deployment = copy.deepcopy(of_kind(rendered["prod"], "Deployment")[0])
    pod_spec(deployment)["containers"][0]["readinesProbe"] = {"grpc": {"port": 1}}
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(deployment)
    deployment = copy.deepcopy(of_kind(rendered["prod"], "Deployment")[0])
    deployment["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(deployment)
    cluster = copy.deepcopy(of_kind(rendered["prod"], "Cluster")[0])
    del cluster["spec"]["storage"]
    with pytest.raises(jsonschema.ValidationError):
        validate(cluster)
    cluster = copy.deepcopy(of_kind(rendered["prod"], "Cluster")[0])
    cluster["spec"]["instance"] = 3
    with pytest.raises(jsonschema.ValidationError):
        validate(cluster)
    for mistake in ({"poolMode": "statement"}, {"parameters": {"pool_mode": "session"}}):
        pooler = copy.deepcopy(of_kind(rendered["prod"], "Pooler")[0])
        pooler["spec"]["pgbouncer"] |= mistake  # a mode CNPG lacks; a parameter the operator owns
        with pytest.raises(jsonschema.ValidationError):
            validate(pooler)
    backup = copy.deepcopy(of_kind(rendered["prod"], "ScheduledBackup")[0])
    backup["spec"]["schedule"] = "0 2 * * *"  # five fields: CNPG wants six
    with pytest.raises(jsonschema.ValidationError):
        validate(backup)
    mistakes: list[dict[str, Any]] = [
        {"usages": ["server-auth"]},  # cert-manager spells it "server auth"
        {"duration": "90d"},  # a Go duration has no days
        {"privateKey": {"algorithm": "EC"}},
        {"uri": ["spiffe://atelier/ledger"]},  # the field is `uris`
    ]
    for mistake in mistakes:
        certificate = copy.deepcopy(of_kind(rendered["prod"], "Certificate")[0])
        certificate["spec"] |= mistake
        with pytest.raises(jsonschema.ValidationError):
            validate(certificate)
    issuer = copy.deepcopy(of_kind(rendered["prod"], "Issuer")[0])
    issuer["spec"] = {"selfSigned": {}, "ca": {"secretName": "atelier-ca"}}  # one kind of issuer only
    with pytest.raises(jsonschema.ValidationError):
        validate(issuer)
    unknown = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    with pytest.raises(AssertionError, match="custom resource without a schema"):
        validate(unknown)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_everything_lands_in_the_overlay_namespace(rendered: dict[str, list[Manifest]], overlay: str) -> None:
    namespace = NAMESPACES[overlay]
    for manifest in rendered[overlay]:
        if manifest["kind"] in CLUSTER_SCOPED:
            assert manifest["metadata"]["name"] == namespace
            labels = manifest["metadata"]["labels"]
            assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
        else:
            assert manifest["metadata"].get("namespace") == namespace, manifest["metadata"]["name"]


def _matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_references_resolve(rendered: dict[str, list[Manifest]], overlay: str) -> None:
    manifests = rendered[overlay]
    names = {(m["kind"], m["metadata"]["name"]) for m in manifests}
    workloads = of_kind(manifests, "Deployment", "StatefulSet")
    pod_labels = [w["spec"]["template"]["metadata"]["labels"] for w in workloads]
    cnpg_secrets = {f"{c['metadata']['name']}-app" for c in of_kind(manifests, "Cluster")}
    certificate_secrets = {c["spec"]["secretName"] for c in of_kind(manifests, "Certificate")}
    operator_secrets = {"atelier-tls", "db-backup-s3", "atelier-user-token"}

    for workload in workloads:
        assert _matches(
            workload["spec"]["selector"]["matchLabels"], workload["spec"]["template"]["metadata"]["labels"]
        )
        spec = pod_spec(workload)
        if "serviceAccountName" in spec:
            assert ("ServiceAccount", spec["serviceAccountName"]) in names
        for volume in spec.get("volumes", []):
            if "configMap" in volume:
                assert ("ConfigMap", volume["configMap"]["name"]) in names
            if "secret" in volume:
                # cert-manager makes a Certificate's Secret; the operators make the others.
                assert volume["secret"]["secretName"] in certificate_secrets | operator_secrets, volume
        for container in spec["containers"] + spec.get("initContainers", []):
            for source in container.get("envFrom", []):
                if "configMapRef" in source:
                    # A generated ConfigMap is referenced by its hashed name, so a change rolls the pods.
                    assert ("ConfigMap", source["configMapRef"]["name"]) in names
                else:
                    # Application Secrets are made by the operator of the cluster, one per process.
                    assert source["secretRef"]["name"].endswith("-secrets")
            for variable in container.get("env", []):
                ref = variable.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["name"] in cnpg_secrets | operator_secrets, ref

    for service in of_kind(manifests, "Service"):
        assert any(_matches(service["spec"]["selector"], labels) for labels in pod_labels), service[
            "metadata"
        ]
    for budget in of_kind(manifests, "PodDisruptionBudget"):
        selector = budget["spec"]["selector"]["matchLabels"]
        assert any(_matches(selector, labels) for labels in pod_labels), budget["metadata"]["name"]
    for hpa in of_kind(manifests, "HorizontalPodAutoscaler"):
        target = hpa["spec"]["scaleTargetRef"]
        assert (target["kind"], target["name"]) in names
        deployment = next(w for w in workloads if w["metadata"]["name"] == target["name"])
        assert "replicas" not in deployment["spec"], "the HPA owns the replica count"
    issuers = {i["metadata"]["name"]: i["spec"] for i in of_kind(manifests, "Issuer")}
    for certificate in of_kind(manifests, "Certificate"):
        assert certificate["spec"]["issuerRef"]["kind"] == "Issuer"
        assert certificate["spec"]["issuerRef"]["name"] in issuers
    for issuer in issuers.values():
        if "ca" in issuer:
            assert issuer["ca"]["secretName"] in certificate_secrets
    for backup in of_kind(manifests, "ScheduledBackup"):
        assert ("Cluster", backup["spec"]["cluster"]["name"]) in names
    for pooler in of_kind(manifests, "Pooler"):
        assert ("Cluster", pooler["spec"]["cluster"]["name"]) in names
    stores = {m["metadata"]["name"] for m in of_kind(manifests, "ObjectStore")}
    for cluster in of_kind(manifests, "Cluster"):
        for plugin in cluster["spec"].get("plugins", []):
            assert plugin["parameters"]["barmanObjectName"] in stores
    generated(manifests, "ConfigMap", "atelier-config")


def test_prod_backs_up_every_database_and_dev_does_not(rendered: dict[str, list[Manifest]]) -> None:
    prod_clusters = {c["metadata"]["name"] for c in of_kind(rendered["prod"], "Cluster")}
    assert prod_clusters == {
        f"{name}-db" for name in ("accounts", "catalog", "ledger", "generation", "workflow")
    }
    backed_up = {b["spec"]["cluster"]["name"] for b in of_kind(rendered["prod"], "ScheduledBackup")}
    assert backed_up == prod_clusters
    for cluster in of_kind(rendered["prod"], "Cluster"):
        assert cluster["spec"]["instances"] >= 3
        assert [p["isWALArchiver"] for p in cluster["spec"]["plugins"]] == [True]
    assert not of_kind(rendered["dev"], "ScheduledBackup", "ObjectStore")
