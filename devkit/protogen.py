"""Regenerate the Python code for protos/ (`python -m devkit.protogen`), or check it is fresh (`--check`).

The generated package `atelier/` (messages, gRPC stubs and mypy stubs) is committed so that a checkout
runs without a build step; the freshness test makes sure it never drifts from protos/.
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
PACKAGE = "atelier"


def _plugin(name: str) -> str:
    found = Path(sys.executable).parent / name
    resolved = found if found.exists() else shutil.which(name)
    if resolved is None:
        raise SystemExit(f"{name} not found: install the dev extras (mypy-protobuf)")
    return str(resolved)


def generate(out: Path) -> None:
    import grpc_tools
    from grpc_tools import protoc

    sources = sorted(str(p.relative_to(PROTOS)) for p in PROTOS.rglob("*.proto"))
    well_known = Path(grpc_tools.__file__).parent / "_proto"
    args = [
        "protoc",
        f"-I{PROTOS}",
        f"-I{well_known}",
        f"--plugin=protoc-gen-mypy={_plugin('protoc-gen-mypy')}",
        f"--plugin=protoc-gen-mypy_grpc={_plugin('protoc-gen-mypy_grpc')}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        f"--mypy_out={out}",
        f"--mypy_grpc_out={out}",
        *sources,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    for directory in [out / PACKAGE, *(p for p in (out / PACKAGE).rglob("*") if p.is_dir())]:
        (directory / "__init__.py").touch()
    (out / PACKAGE / "py.typed").touch()


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts}


def stale_files() -> list[str]:
    """Files under atelier/ that differ from a fresh generation (missing, extra or changed)."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp)
        generate(fresh)
        expected = _tree(fresh / PACKAGE)
        actual = _tree(ROOT / PACKAGE) if (ROOT / PACKAGE).exists() else set()
        stale = sorted(expected ^ actual)
        for name in sorted(expected & actual):
            if not filecmp.cmp(fresh / PACKAGE / name, ROOT / PACKAGE / name, shallow=False):
                stale.append(name)
        return stale


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 when the generated code is stale")
    args = parser.parse_args()
    if args.check:
        stale = stale_files()
        if stale:
            print("generated code is stale; run `make protos`:\n  " + "\n  ".join(stale))
            raise SystemExit(1)
        print("generated code is fresh")
        return
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp))
        shutil.rmtree(ROOT / PACKAGE, ignore_errors=True)
        shutil.copytree(Path(tmp) / PACKAGE, ROOT / PACKAGE)
    print(f"generated {PACKAGE}/ from protos/")


if __name__ == "__main__":
    main()
