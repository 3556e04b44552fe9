"""Nothing in the project reads a path outside the repository (issue 16, item 15).

The audit hook in `repository_bounds.py` catches such reads in the test process as they happen; these
checks catch them where no hook runs: the build files (make, .ci/run, the Dockerfile) and any source
that climbs out of the repository from its own location.
"""

from __future__ import annotations

import ast
import re
import subprocess
from pathlib import Path

import pytest

from tests import repository_bounds
from tests.repository_bounds import ROOT, OutsideRepositoryError

BUILD_FILES = ("Makefile", ".ci/run", "Dockerfile", "pyproject.toml")
# Relative paths in shell and make syntax: `../x`, `$(dirname "$0")/..`.
RELATIVE = re.compile(r"(?<![\w.])((?:\.\./)+[\w./-]*|\.\.(?=[\s\"';)]|$))")


def tracked(*patterns: str) -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--", *patterns], cwd=ROOT, capture_output=True, check=True
    ).stdout
    return [ROOT / name for name in listed.decode().split("\0") if name and (ROOT / name).is_file()]


def escapes(base: Path, relative: str) -> bool:
    return not (base / relative).resolve().is_relative_to(ROOT)


def test_build_files_stay_inside_the_repository() -> None:
    offenders = []
    for path in tracked(*BUILD_FILES, "*.sh"):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            # `$(dirname "$0")/..` is relative to the script's folder, as is any other relative path here.
            offenders += [
                f"{path.relative_to(ROOT)}:{number}: {found}"
                for found in RELATIVE.findall(line)
                if escapes(path.parent, found)
            ]
    assert offenders == []


def climbs(node: ast.expr) -> int | None:
    """How many folders `node` climbs from `Path(__file__)`, or None when it does not start there."""
    levels = 0
    while True:
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            method = node.func
            if method.attr in {"resolve", "absolute"}:
                node = method.value
                continue
            if method.attr == "Path":  # `pathlib.Path(...)`; a bare `Path(...)` is the case below
                break
            return None
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "Path":
            break
        if isinstance(node, ast.Attribute) and node.attr == "parent":
            levels, node = levels + 1, node.value
            continue
        if (
            isinstance(node, ast.Subscript)
            and isinstance(node.value, ast.Attribute)
            and node.value.attr == "parents"
            and isinstance(node.slice, ast.Constant)
            and isinstance(node.slice.value, int)
        ):
            levels, node = levels + node.slice.value + 1, node.value.value
            continue
        return None
    argument = node.args[0] if isinstance(node, ast.Call) and node.args else None
    return levels if isinstance(argument, ast.Name) and argument.id == "__file__" else None


def mark_subscripted_parents(tree: ast.AST) -> None:
    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute):
            node.value.parent_subscript = node  # type: ignore[attr-defined]


def test_no_source_climbs_out_of_the_repository() -> None:
    offenders = []
    for path in tracked("*.py"):
        if path.is_relative_to(ROOT / "atelier") or path == Path(__file__).resolve():
            continue  # generated protobuf code, and this file's own patterns
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        mark_subscripted_parents(tree)
        depth = len(path.relative_to(ROOT).parts)  # climbing this many folders from the file reaches ROOT
        for node in ast.walk(tree):
            where = f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, ast.expr) and (levels := climbs(node)) is not None and levels > depth:
                offenders.append(f"{where}: climbs {levels} folders, {depth} reach the root")
            elif (
                isinstance(node, ast.Attribute)
                and node.attr == "parents"
                and not hasattr(node, "parent_subscript")
            ):
                offenders.append(f"{where}: walks up through .parents")
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and "../shared" in node.value:
                offenders.append(f"{where}: names ../shared")
    assert offenders == []


def test_the_climb_counter_sees_a_climb_out() -> None:
    tree = ast.parse("Path(__file__).resolve().parents[3] / 'shared'", mode="eval")
    assert climbs(tree.body.left) == 4  # type: ignore[attr-defined]
    assert climbs(ast.parse("Path(__file__).parent.parent", mode="eval").body) == 2
    assert climbs(ast.parse("Path(name).parent", mode="eval").body) is None


def test_the_guard_refuses_a_read_beside_the_repository(tmp_path: Path) -> None:
    root = tmp_path / "clone"
    (root / "tests").mkdir(parents=True)
    beside = tmp_path / "shared" / "seed"
    beside.mkdir(parents=True)
    (beside / "document.txt").write_text("not ours")
    forbidden = repository_bounds.neighbours(root)
    assert forbidden == (str((tmp_path / "shared").resolve()),)
    assert repository_bounds.outside_repository(str(beside / "document.txt"), forbidden)
    assert not repository_bounds.outside_repository(str(root / "tests" / "x.py"), forbidden)


def test_the_guard_is_installed_in_this_run() -> None:
    sibling = next((Path(p) for p in repository_bounds.neighbours()), None)
    if sibling is None:
        pytest.skip("nothing beside this clone to read")
    with pytest.raises(OutsideRepositoryError):
        list(sibling.iterdir()) if sibling.is_dir() else sibling.read_bytes()
