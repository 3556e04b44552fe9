"""The product document (`docs/product-document.txt`) parsed into its pages.

The parser knows only the document's layout (label, title, subtitle, date, "Reading view", then headings
each followed by "- " lines), nothing of the renderer, so the comparison with rendered pages is fair.
"""

from __future__ import annotations

from dataclasses import dataclass

from tests.product_document import PRODUCT_DOCUMENT


@dataclass(frozen=True)
class SeedPage:
    section_label: str
    title: str
    subtitle: str
    date: str
    view_label: str
    sections: list[tuple[str, list[str]]]


def seed_text() -> str:
    return PRODUCT_DOCUMENT.read_text(encoding="utf-8")


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
