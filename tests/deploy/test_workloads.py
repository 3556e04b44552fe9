"""Every workload is probed, bounded and locked down; the manifests pass only settings the code reads."""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

import pytest

from gateway.settings import GatewaySettings
from kit.settings import SERVICES, ServiceSettings, Settings
from tests.deploy.conftest import (
    OVERLAYS,
    ROOT,
    TLS_DIR,
    USER_TOKEN_DIR,
    Manifest,
    generated,
    named,
    of_kind,
    pod_spec,
)

WORKER_PORT = 50056
# Each service's well-known port, read off the default of its `<name>_addr` setting.
DEFAULT_PORTS = {
    service: int(str(Settings.model_fields[f"{service}_addr"].default).rsplit(":", 1)[1])
    for service in SERVICES
}
RUN_AS = 10001  # the image's user (Dockerfile)


def containers(workload: Manifest, *, init: bool = True) -> list[Manifest]:
    spec = pod_spec(workload)
    return list(spec["containers"]) + (list(spec.get("initContainers", [])) if init else [])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_workload_is_probed_bounded_and_locked_down(
    rendered: dict[str, list[Manifest]], overlay: str
) -> None:
    workloads = of_kind(rendered[overlay], "Deployment", "StatefulSet")
    assert {w["metadata"]["name"] for w in workloads} >= {*SERVICES, "generation-worker", "gateway", "nats"}
    for workload in workloads:
        name = workload["metadata"]["name"]
        spec = pod_spec(workload)
        pod_security = spec["securityContext"]
        assert pod_security["runAsNonRoot"] is True, name
        assert pod_security["seccompProfile"] == {"type": "RuntimeDefault"}, name
        mounts_by_volume = {v["name"]: v for v in spec.get("volumes", [])}
        for container in containers(workload):
            where = f"{name}/{container['name']}"
            security = container["securityContext"]
            assert security["runAsNonRoot"] is True, where
            assert security["readOnlyRootFilesystem"] is True, where
            assert security["allowPrivilegeEscalation"] is False, where
            assert security["capabilities"] == {"drop": ["ALL"]}, where
            for bound in ("requests", "limits"):
                assert set(container["resources"][bound]) >= {"cpu", "memory"}, f"{where} {bound}"
            # A read-only root needs a writable /tmp, on an emptyDir with a size limit.
            tmp = [m for m in container.get("volumeMounts", []) if m["mountPath"] == "/tmp"]
            if tmp:
                assert mounts_by_volume[tmp[0]["name"]]["emptyDir"]["sizeLimit"], where
            elif container["image"].startswith("registry.example.com/atelier/"):
                pytest.fail(f"{where} has a read-only root and no /tmp")
            assert "ports" not in container or all("hostPort" not in p for p in container["ports"]), where
        for container in containers(workload, init=False):
            for probe in ("readinessProbe", "livenessProbe"):
                assert probe in container, f"{name}/{container['name']} has no {probe}"
        assert not spec.get("hostNetwork"), name
        assert not spec.get("hostPID"), name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_grpc_processes_are_probed_natively_on_their_plaintext_health_port(
    rendered: dict[str, list[Manifest]], overlay: str
) -> None:
    """The gRPC port demands a client certificate, which the kubelet's probes cannot present: every probe
    asks the health service that the process also serves alone, in plaintext, on `grpc_health_port`."""
    config = generated(rendered[overlay], "ConfigMap", "atelier-config")["data"]
    health = int(config["ATELIER_GRPC_HEALTH_PORT"])
    assert health not in DEFAULT_PORTS.values()
    assert health != WORKER_PORT
    ports = {**DEFAULT_PORTS, "generation-worker": WORKER_PORT}
    for name, port in ports.items():
        deployment = named(rendered[overlay], "Deployment", name)
        (container,) = containers(deployment, init=False)
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["ATELIER_GRPC_PORT"] == str(port)
        assert [p["containerPort"] for p in container["ports"] if p["name"] == "grpc"] == [port]
        assert [p["containerPort"] for p in container["ports"] if p["name"] == "health"] == [health]
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert container[probe]["grpc"] == {"port": health}, f"{name} {probe}"
        assert pod_spec(deployment)["securityContext"]["runAsUser"] == RUN_AS


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_process_runs_its_module_and_migrates_its_own_database(
    rendered: dict[str, list[Manifest]], overlay: str
) -> None:
    manifests = rendered[overlay]
    clusters = {c["metadata"]["name"]: c for c in of_kind(manifests, "Cluster")}
    for deployment in of_kind(manifests, "Deployment"):
        name = deployment["metadata"]["name"]
        if name == "otel-collector":
            continue
        (main,) = containers(deployment, init=False)
        module = main["args"][0]
        assert (ROOT / Path(*module.split("."))).with_suffix(".py").exists() or (
            ROOT / Path(*module.split(".")) / "__main__.py"
        ).exists(), f"{name}: no module {module}"
        if name == "gateway":
            assert main["args"] == ["gateway"]
            assert "initContainers" not in pod_spec(deployment)
            continue
        owner = "generation" if name == "generation-worker" else name
        assert module == ("services.generation.worker" if owner != name else f"services.{name}")
        (migrate,) = pod_spec(deployment)["initContainers"]
        assert migrate["args"] == [f"services.{owner}", "migrate"]
        assert migrate["image"] == main["image"]
        # The service itself goes through its database's pooler (tests/deploy/test_capacity.py).
        url = next(e for e in migrate["env"] if e["name"] == "ATELIER_DATABASE_URL")
        assert url["valueFrom"]["secretKeyRef"] == {"name": f"{owner}-db-app", "key": "uri"}
        cluster = clusters[f"{owner}-db"]
        assert cluster["spec"]["bootstrap"]["initdb"] == {"database": owner, "owner": owner}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_atelier_variable_is_a_setting_the_code_reads(
    rendered: dict[str, list[Manifest]], overlay: str
) -> None:
    settings_classes = [GatewaySettings, ServiceSettings] + [
        importlib.import_module(f"services.{service}.__main__").DEFINITION.settings_factory
        for service in SERVICES
    ]
    known = {f"ATELIER_{field.upper()}" for cls in settings_classes for field in cls.model_fields}
    manifests = rendered[overlay]
    config = generated(manifests, "ConfigMap", "atelier-config")["data"]
    names = set(config)
    for deployment in of_kind(manifests, "Deployment"):
        for container in containers(deployment):
            names |= {e["name"] for e in container.get("env", []) if e["name"].startswith("ATELIER_")}
    unknown = names - known
    assert not unknown, f"no setting reads {sorted(unknown)}"
    # Each service address resolves that service's headless Service (every ready pod, balanced round
    # robin by the client) at its port.
    for service in SERVICES:
        address = config[f"ATELIER_{service.upper()}_ADDR"]
        assert address.startswith("dns:///")
        host, port = address.removeprefix("dns:///").split(":")
        spec = named(manifests, "Service", host)["spec"]
        assert spec["clusterIP"] == "None"
        assert [p["port"] for p in spec["ports"]] == [int(port)] == [DEFAULT_PORTS[service]]
    nats_host = config["ATELIER_NATS_URL"].removeprefix("tls://").split(":")[0]
    assert named(manifests, "Service", nats_host)["spec"]["ports"][0]["port"] == 4222


def test_production_settings(rendered: dict[str, list[Manifest]]) -> None:
    config = generated(rendered["prod"], "ConfigMap", "atelier-config")["data"]
    assert config["ATELIER_ENVIRONMENT"] == "production"
    # Streams live on the three NATS nodes.
    assert config["ATELIER_NATS_STREAM_REPLICAS"] == "3"
    assert named(rendered["prod"], "StatefulSet", "nats")["spec"]["replicas"] == 3
    # Migrations run as their own step (the init containers), never as a side effect of serving.
    assert config["ATELIER_CREATE_DATABASE"] == "false"
    assert config["ATELIER_MIGRATE_ON_START"] == "false"
    assert config["ATELIER_OTEL_EXPORTER"] == "otlp"
    assert config["ATELIER_OTEL_ENDPOINT"] == "http://otel-collector:4317"
    assert "{trace_id}" in config["ATELIER_TRACING_UI_URL"]
    # Secrets are required in production: a pod without its Secret does not start.
    for deployment in of_kind(rendered["prod"], "Deployment"):
        for container in containers(deployment):
            for source in container.get("envFrom", []):
                assert not source.get("secretRef", {}).get("optional", False)
    for name in ("gateway", "ledger", "generation"):
        assert named(rendered["prod"], "Deployment", name)["spec"]["replicas"] >= 3
    assert named(rendered["prod"], "HorizontalPodAutoscaler", "generation-worker")["spec"]["minReplicas"] >= 2


def test_dev_is_small_and_runs_without_secrets(rendered: dict[str, list[Manifest]]) -> None:
    for deployment in of_kind(rendered["dev"], "Deployment"):
        assert deployment["spec"].get("replicas", 1) == 1
    for cluster in of_kind(rendered["dev"], "Cluster"):
        assert cluster["spec"]["instances"] == 1
    secret_refs = [
        source["secretRef"]
        for deployment in of_kind(rendered["dev"], "Deployment")
        for container in containers(deployment)
        for source in container.get("envFrom", [])
        if "secretRef" in source
    ]
    assert secret_refs
    assert all(ref["optional"] is True for ref in secret_refs)


def test_nats_is_a_three_node_jetstream_cluster(rendered: dict[str, list[Manifest]]) -> None:
    manifests = rendered["prod"]
    nats = named(manifests, "StatefulSet", "nats")
    assert nats["spec"]["replicas"] == 3
    assert nats["spec"]["serviceName"] == "nats-headless"
    conf = named(manifests, "ConfigMap", "nats-config")["data"]["nats.conf"]
    assert "jetstream {" in conf
    routes = [f"nats://nats-{i}.nats-headless:6222" for i in range(3)]
    assert all(route in conf for route in routes)
    (claim,) = nats["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["resources"]["requests"]["storage"]
    assert named(manifests, "PodDisruptionBudget", "nats")["spec"]["maxUnavailable"] == 1


def settings_factory(name: str, container: Manifest) -> Any:
    """The settings class of the process `container` runs (`python -m <args[0]>`)."""
    if name == "gateway":
        return GatewaySettings
    # What `python -m <args[0]>` runs: the package's __main__, or the module itself.
    module = importlib.import_module(container["args"][0])
    if hasattr(module, "__path__"):
        module = importlib.import_module(container["args"][0] + ".__main__")
    return module.DEFINITION.settings_factory


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_process_accepts_its_settings(
    rendered: dict[str, list[Manifest]], overlay: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The environment a pod gets (ConfigMap + literal env) loads into that process's settings class."""
    manifests = rendered[overlay]
    config = generated(manifests, "ConfigMap", "atelier-config")["data"]
    for deployment in of_kind(manifests, "Deployment"):
        name = deployment["metadata"]["name"]
        if name == "otel-collector":
            continue
        (container,) = containers(deployment, init=False)
        factory = settings_factory(name, container)
        for variable in list(os.environ):
            if variable.startswith("ATELIER_"):
                monkeypatch.delenv(variable)
        env = dict(config) | {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}
        if name != "gateway":
            env["ATELIER_DATABASE_URL"] = f"postgresql://{name}:secret@{name}-db-rw:5432/{name}"
        # What the pods' Secrets would add (docs/operations.md, "Secrets"): real, non-placeholder values.
        env.setdefault("ATELIER_JWT_KEYS", "k2026:" + "s" * 48)
        if name.startswith("generation"):
            env.setdefault("ATELIER_BLOB_URL_SECRET", "b" * 48)  # from generation-secrets
        for variable, value in env.items():
            monkeypatch.setenv(variable, value)
        settings = factory()
        assert settings.environment == config["ATELIER_ENVIRONMENT"]
        assert settings.nats_url == "tls://nats:4222"  # a client that insists on TLS
        assert settings.otel_exporter == "otlp"
        if name == "gateway":
            assert isinstance(settings, GatewaySettings)
            assert settings.http_port == 8000
        else:
            assert isinstance(settings, ServiceSettings)
            assert settings.grpc_port == int(env["ATELIER_GRPC_PORT"])
            assert settings.metrics_port == 9090
            assert settings.create_database is False
            assert settings.migrate_on_start is False
            assert settings.grpc_health_port == int(config["ATELIER_GRPC_HEALTH_PORT"])
        # mTLS and the user-token keys in every shape (production refuses to start without them).
        assert settings.grpc_tls_dir == TLS_DIR
        assert settings.user_token_public_keys_file == f"{USER_TOKEN_DIR}/public.pem"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_migrate_step_accepts_its_settings(
    rendered: dict[str, list[Manifest]], overlay: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The init containers load the same production settings (TLS ones included) before they migrate."""
    manifests = rendered[overlay]
    config = generated(manifests, "ConfigMap", "atelier-config")["data"]
    for deployment in of_kind(manifests, "Deployment"):
        for migrate in pod_spec(deployment).get("initContainers", []):
            for variable in list(os.environ):
                if variable.startswith("ATELIER_"):
                    monkeypatch.delenv(variable)
            env = dict(config) | {
                e["name"]: e.get("value", "postgresql://m:secret@db-rw:5432/m") for e in migrate["env"]
            }
            if any(s.get("secretRef", {}).get("name") == "generation-secrets" for s in migrate["envFrom"]):
                env["ATELIER_BLOB_URL_SECRET"] = "b" * 48
            for variable, value in env.items():
                monkeypatch.setenv(variable, value)
            settings = settings_factory(deployment["metadata"]["name"], migrate)()
            assert settings.environment == config["ATELIER_ENVIRONMENT"]


def test_every_secret_the_manifests_need_is_documented(rendered: dict[str, list[Manifest]]) -> None:
    """Each Secret the prod manifests read is in docs/operations.md: those operators create by hand, and
    those CloudNativePG and cert-manager make."""
    operations = (ROOT / "docs" / "operations.md").read_text()
    manifests = rendered["prod"]
    names: set[str] = set()
    for deployment in of_kind(manifests, "Deployment"):
        for container in containers(deployment):
            names |= {s["secretRef"]["name"] for s in container.get("envFrom", []) if "secretRef" in s}
            names |= {
                e["valueFrom"]["secretKeyRef"]["name"]
                for e in container.get("env", [])
                if "secretKeyRef" in e.get("valueFrom", {})
            }
        names |= {v["secret"]["secretName"] for v in pod_spec(deployment).get("volumes", []) if "secret" in v}
    for store in of_kind(manifests, "ObjectStore"):
        names |= {ref["name"] for ref in store["spec"]["configuration"]["s3Credentials"].values()}
    names |= {
        tls["secretName"] for ingress in of_kind(manifests, "Ingress") for tls in ingress["spec"]["tls"]
    }
    assert len(names) > 10
    # cert-manager makes one per workload (deploy/k8s/base/certificates.yaml).
    certificates = of_kind(manifests, "Certificate")
    workload_certificates = {c["spec"]["secretName"] for c in certificates if not c["spec"].get("isCA")}
    for name in sorted(names):
        documented = name
        for service in SERVICES:
            documented = documented.replace(f"{service}-db-app", "<service>-db-app")
        if name in workload_certificates:
            documented = "<workload>-tls"
        assert f"`{documented}`" in operations, f"Secret {name} is not in docs/operations.md"
