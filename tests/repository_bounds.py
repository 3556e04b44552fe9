"""The suite reads nothing beside the repository: a bare clone must pass exactly as a checkout does.

CI clones the repository into a folder with other folders beside it (the steering repo's `shared/`
among them), so a test that found a file "next to the repository" would pass there and fail on a
newcomer's clone. `tests/conftest.py` installs this guard, which makes such a read fail at once, in any clone:

- an audit hook (PEP 578) refuses every `open`, `os.listdir` and `os.scandir` of a path inside a
  folder that sat beside the repository when the run started, naming the path;
- `test_repository_bounds.py` checks the build files and sources for the same mistake statically,
  which covers the processes the hook cannot see (make, .ci/run, the launched stack).

Folders that the run itself makes there (pytest's and the tests' temporary folders, when the clone
lives in the temp directory) are not "beside the repository": only the ones present at the start are.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
_AUDITED = {"open", "os.listdir", "os.scandir"}


class OutsideRepositoryError(PermissionError):
    """A test or the code under test read a file beside the repository."""


def neighbours(root: Path = ROOT) -> tuple[str, ...]:
    """The folders beside the repository now, as path prefixes (temporary-file roots excluded)."""
    temp = Path(tempfile.gettempdir()).resolve()
    found = []
    for entry in root.parent.iterdir():
        resolved = entry.resolve()
        if resolved == root or temp.is_relative_to(resolved) or entry.name.startswith("pytest-of-"):
            continue
        found.append(str(resolved))
    return tuple(found)


def outside_repository(path: str, forbidden: tuple[str, ...]) -> bool:
    resolved = os.path.realpath(path)
    return any(resolved == prefix or resolved.startswith(prefix + os.sep) for prefix in forbidden)


def install(forbidden: tuple[str, ...]) -> None:
    def hook(event: str, args: tuple[Any, ...]) -> None:
        if event not in _AUDITED or not args:
            return
        path = args[0]
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        if isinstance(path, (str, os.PathLike)) and outside_repository(os.fspath(path), forbidden):
            raise OutsideRepositoryError(
                f"{path} is outside the repository; keep what the tests need inside it ({ROOT})"
            )

    sys.addaudithook(hook)
