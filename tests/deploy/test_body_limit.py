"""The Ingress lets through exactly the bodies the gateway accepts: its body-size annotation is the
upload limit (`ATELIER_UPLOAD_MAX_BYTES`), in every overlay, unless a manifest overrides the setting."""

from __future__ import annotations

import re

import pytest

from kit.settings import Settings
from tests.deploy.conftest import OVERLAYS, Manifest, named, of_kind

ANNOTATION = "nginx.ingress.kubernetes.io/proxy-body-size"
# nginx sizes (client_max_body_size): bytes, or k/m/g in powers of 1024.
UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def nginx_bytes(size: str) -> int:
    found = re.fullmatch(r"(\d+)([kmg]?)", size.strip().lower())
    assert found, f"not an nginx size: {size!r}"
    return int(found.group(1)) * UNITS[found.group(2)]


def configured_limits(manifests: list[Manifest]) -> set[int]:
    """Every value a ConfigMap or container gives ATELIER_UPLOAD_MAX_BYTES (none: the default holds)."""
    values: set[int] = set()
    for config in of_kind(manifests, "ConfigMap"):
        if "ATELIER_UPLOAD_MAX_BYTES" in (config.get("data") or {}):
            values.add(int(config["data"]["ATELIER_UPLOAD_MAX_BYTES"]))
    for workload in of_kind(manifests, "Deployment", "StatefulSet", "Job"):
        for container in workload["spec"]["template"]["spec"]["containers"]:
            for variable in container.get("env", []):
                if variable["name"] == "ATELIER_UPLOAD_MAX_BYTES":
                    values.add(int(variable["value"]))
    return values


def test_nginx_sizes_parse() -> None:
    assert [nginx_bytes(s) for s in ("10m", "512k", "1g", "1000")] == [
        10 * 1024**2,
        512 * 1024,
        1024**3,
        1000,
    ]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_ingress_body_size_is_the_upload_limit(rendered: dict[str, list[Manifest]], overlay: str) -> None:
    manifests = rendered[overlay]
    ingress = named(manifests, "Ingress", "gateway")
    allowed = nginx_bytes(ingress["metadata"]["annotations"][ANNOTATION])
    # Uploads are the raw image as the request body (no multipart), so there is no envelope to add.
    limits = configured_limits(manifests) or {Settings.model_fields["upload_max_bytes"].default}
    assert limits == {allowed}, (
        f"{overlay}: the Ingress passes bodies up to {allowed} bytes but the gateway's limit is {limits}"
    )
