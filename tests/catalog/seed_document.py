"""Reads the product document (the seed text) into plain facts, for the seed fidelity test."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from tests.product_document import PRODUCT_DOCUMENT

PAGES = ("PRICING GUIDE", "VIDEO MODELS", "IMAGE MODELS", "GETTING STARTED", "WORKFLOW GUIDE")


@dataclass
class Item:
    """A titled block of `- Key: value` bullets (a model or a template)."""

    title: str
    fields: dict[str, str] = field(default_factory=dict)


@dataclass
class Page:
    name: str
    lines: list[str] = field(default_factory=list)
    items: list[Item] = field(default_factory=list)

    @property
    def subtitle(self) -> str:
        return self.lines[1]

    @property
    def date(self) -> str:
        return self.lines[2]

    def bullet(self, pattern: str) -> re.Match[str]:
        for line in self.lines:
            found = re.search(pattern, line)
            if found:
                return found
        raise AssertionError(f"no line of {self.name} matches {pattern!r}")


def read_seed_document(path: Path | None = None) -> dict[str, Page]:
    lines = [line.rstrip() for line in (path or PRODUCT_DOCUMENT).read_text(encoding="utf-8").splitlines()]
    pages: dict[str, Page] = {}
    current: Page | None = None
    for index, line in enumerate(lines):
        if line in PAGES:
            current = pages[line] = Page(line)
            continue
        if current is None or not line:
            continue
        current.lines.append(line)
        following = lines[index + 1] if index + 1 < len(lines) else ""
        if not line.startswith("- ") and following.startswith(("- Model code:", "- Template code:")):
            current.items.append(Item(line))
        elif line.startswith("- ") and current.items and _in_item(lines, index, current.items[-1].title):
            key, _, value = line[2:].partition(": ")
            current.items[-1].fields[key] = value
    return pages


def _in_item(lines: list[str], index: int, title: str) -> bool:
    """True when the bullet at `index` belongs to the block under `title` (no other heading between)."""
    back = index - 1
    while back >= 0 and lines[back].startswith("- "):
        back -= 1
    return back >= 0 and lines[back] == title
