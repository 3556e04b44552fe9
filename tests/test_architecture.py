"""Architecture rules as tests: services never import each other; the gateway imports no service."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SERVICES = sorted(p.name for p in (ROOT / "services").iterdir() if (p / "__init__.py").exists())


def imported_modules(package: Path) -> list[tuple[Path, str]]:
    found = []
    for path in package.rglob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found += [(path, alias.name) for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.append((path, node.module))
    return found


def test_there_are_five_services() -> None:
    assert SERVICES == ["accounts", "catalog", "generation", "ledger", "workflow"]


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_imports_no_other_service(service: str) -> None:
    offenders = [
        f"{path.relative_to(ROOT)} imports {module}"
        for path, module in imported_modules(ROOT / "services" / service)
        if module.startswith("services.") and module.split(".")[1] != service
    ]
    assert offenders == []


def test_the_gateway_imports_no_service() -> None:
    offenders = [
        f"{path.relative_to(ROOT)} imports {module}"
        for path, module in imported_modules(ROOT / "gateway")
        if module == "services" or module.startswith("services.")
    ]
    assert offenders == []


def test_the_shared_runtime_knows_no_domain() -> None:
    offenders = [
        f"{path.relative_to(ROOT)} imports {module}"
        for path, module in imported_modules(ROOT / "kit")
        if module.split(".")[0] in {"services", "gateway"}
    ]
    assert offenders == []
