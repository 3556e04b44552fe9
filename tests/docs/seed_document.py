"""The product document (`../shared/seed/000_d8a5bf09a3962979.txt`) parsed into its pages.

The parser knows only the document's layout (label, title, subtitle, date, "Reading view", then headings
each followed by "- " lines), nothing of the renderer, so the comparison with rendered pages is fair.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SEED_NAME = Path("shared/seed/000_d8a5bf09a3962979.txt")
# Overrides the search for the document (next to the repository: ../shared/seed/...).
ENV = "ATELIER_SEED_DOCUMENT"


@dataclass(frozen=True)
class SeedPage:
    section_label: str
    title: str
    subtitle: str
    date: str
    view_label: str
    sections: list[tuple[str, list[str]]]


def seed_path() -> Path:
    if os.environ.get(ENV):
        return Path(os.environ[ENV])
    for parent in ROOT.parents:
        candidate = parent / SEED_NAME
        if candidate.is_file():
            return candidate
    pytest.fail(f"product document not found next to {ROOT}; set {ENV}")


def seed_text() -> str:
    return seed_path().read_text(encoding="utf-8")


def seed_pages() -> list[SeedPage]:
    lines = seed_text().splitlines()
    # A page starts at an all-caps label whose fifth line is the "Reading view" marker.
    starts = [
        i
        for i, line in enumerate(lines)
        if line.isupper() and i + 4 < len(lines) and lines[i + 4] == "Reading view"
    ]
    pages = []
    for start, end in zip(starts, [*starts[1:], len(lines)], strict=True):
        label, title, subtitle, date, view = lines[start : start + 5]
        sections: list[tuple[str, list[str]]] = []
        for line in lines[start + 5 : end]:
            if line.startswith("- "):
                sections[-1][1].append(line[2:])
            else:
                sections.append((line, []))
        pages.append(SeedPage(label, title, subtitle, date, view, sections))
    return pages
