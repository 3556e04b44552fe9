"""Files in the cluster: generation and its worker run in different pods that share no disk, so both
reach one S3 bucket (endpoint and bucket from the ConfigMap, keys from their Secret) and neither has a
local blob folder; the settings they load refuse one in production."""

from __future__ import annotations

import pytest

from services.generation.settings import GenerationSettings
from tests.deploy.conftest import OVERLAYS, Manifest, generated, named, pod_spec

STORAGE_PODS = ("generation", "generation-worker")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_generation_and_its_worker_share_one_s3_bucket(
    rendered: dict[str, list[Manifest]], overlay: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifests = rendered[overlay]
    config = generated(manifests, "ConfigMap", "atelier-config")["data"]
    assert config["ATELIER_BLOB_BACKEND"] == "s3"
    assert "ATELIER_BLOB_DIR" not in config
    assert config["ATELIER_S3_ENDPOINT"].startswith(("https://", "http://"))
    for name in STORAGE_PODS:
        spec = pod_spec(named(manifests, "Deployment", name))
        (container,) = spec["containers"]
        sources = container["envFrom"]
        assert {
            "configMapRef": {"name": generated(manifests, "ConfigMap", "atelier-config")["metadata"]["name"]}
        } in sources
        assert any(s.get("secretRef", {}).get("name") == "generation-secrets" for s in sources)
        assert not any(e["name"].startswith(("ATELIER_BLOB", "ATELIER_S3")) for e in container["env"])
        # Nothing to keep files in but the scratch /tmp: every other mount (certificate, keys) is read-only.
        writable = [m["mountPath"] for m in container.get("volumeMounts", []) if not m.get("readOnly")]
        assert writable == ["/tmp"]
    for variable, value in config.items():
        monkeypatch.setenv(variable, value)
    settings = GenerationSettings(blob_url_secret="b" * 48)
    assert (settings.blob_backend, settings.s3_bucket) == ("s3", config["ATELIER_S3_BUCKET"])


def test_production_refuses_a_local_folder(
    rendered: dict[str, list[Manifest]], monkeypatch: pytest.MonkeyPatch
) -> None:
    for variable, value in generated(rendered["prod"], "ConfigMap", "atelier-config")["data"].items():
        monkeypatch.setenv(variable, value)
    monkeypatch.setenv("ATELIER_BLOB_BACKEND", "local")
    with pytest.raises(ValueError, match="production needs ATELIER_BLOB_BACKEND=s3"):
        GenerationSettings(blob_url_secret="b" * 48)
