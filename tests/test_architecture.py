"""Architecture rules as tests: services never import each other; the gateway imports no service; kit
is the runtime (no domain, no development tool)."""

from __future__ import annotations

import ast
import re
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


def test_the_runtime_imports_no_development_tool() -> None:
    offenders = [
        f"{path.relative_to(ROOT)} imports {module}"
        for root in ("kit", "services", "gateway")
        for path, module in imported_modules(ROOT / root)
        if module.split(".")[0] == "devkit"
    ]
    assert offenders == []


def string_literals(path: Path) -> list[tuple[int, str]]:
    """Every string constant of a module except docstrings (prose may mention a service)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                docstrings.add(id(first.value))
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
    ]


# The one place kit must spell a domain word: the EVENTS stream is a single server-wide declaration that
# every process creates identically, and `catalog.>` is an event family (`catalog.changed`) on it.
NAMES_KIT_MAY_SPELL = {("kit/bus.py", "catalog.>")}
# And the one module that must name them all: the product's access table, who may call which RPC
# (issue 19 asks for one table, read as documentation and rendered in docs/security.md). The
# mechanism below the table in that module names none.
MODULES_THAT_NAME_SERVICES = {"kit/access.py"}


def test_kit_never_names_a_service() -> None:
    name = re.compile(r"\b(" + "|".join(SERVICES) + r")\b")
    offenders = [
        f"{path.relative_to(ROOT)}:{line} {value!r}"
        for path in sorted((ROOT / "kit").rglob("*.py"))
        for line, value in string_literals(path)
        if name.search(value)
        and (str(path.relative_to(ROOT)), value) not in NAMES_KIT_MAY_SPELL
        and str(path.relative_to(ROOT)) not in MODULES_THAT_NAME_SERVICES
    ]
    assert offenders == []


@pytest.mark.parametrize("service", SERVICES)
def test_a_servicer_never_queries_a_repository(service: str) -> None:
    """The servicer is gRPC in and out: it may name a repository's typed records (capitalized), never call
    its queries (the service or runner owns the transaction and the query)."""
    path = ROOT / "services" / service / "servicer.py"
    repository = f"services.{service}.repository"
    tree = ast.parse(path.read_text(), filename=str(path))
    aliases = set()
    offenders = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == repository:
            offenders += [alias.name for alias in node.names if not alias.name[:1].isupper()]
        elif isinstance(node, ast.ImportFrom) and node.module == f"services.{service}":
            aliases |= {alias.asname or alias.name for alias in node.names if alias.name == "repository"}
        elif isinstance(node, ast.Import):
            aliases |= {alias.asname or alias.name for alias in node.names if alias.name == repository}
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in aliases
            and not node.attr[:1].isupper()
        ):
            offenders.append(f"{node.value.id}.{node.attr} (line {node.lineno})")
    assert offenders == []
