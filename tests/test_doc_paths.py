"""Every file the docs name exists: a moved or deleted module cannot leave a page pointing at nothing.

A path counts when it is a relative Markdown link, or a backticked path with a folder and a file
extension (`services/ledger/events.py`). It may be written from the repository root, from the page's
folder, or from a folder the same page names in backticks (a table of `js/api.js` under
`gateway/web/static/`).
"""

from __future__ import annotations

import re
from pathlib import Path

from tests.repository_bounds import ROOT

LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
NAMED_FILE = re.compile(
    r"`((?:[\w.-]+/)+[\w.-]+\.(?:py|md|yaml|yml|sql|proto|json|toml|txt|js|mjs|html|css))`"
)
NAMED_FOLDER = re.compile(r"`((?:[\w.-]+/)+)`")


def pages() -> list[Path]:
    return sorted([*ROOT.glob("docs/**/*.md"), ROOT / "README.md"])


def broken_paths(page: Path, text: str | None = None) -> list[str]:
    """What `page` (or `text`, read as if it stood at `page`) names that does not exist."""
    text = page.read_text(encoding="utf-8") if text is None else text
    bases = [ROOT, page.parent, *(ROOT / f for f in NAMED_FOLDER.findall(text) if (ROOT / f).is_dir())]
    broken = [
        f"{page.relative_to(ROOT)}: `{name}`"
        for name in NAMED_FILE.findall(text)
        if not any((base / name).exists() for base in bases)
    ]
    broken += [
        f"{page.relative_to(ROOT)}: link {target}"
        for target in LINK.findall(text)
        if not target.startswith(("http://", "https://", "mailto:")) and not (page.parent / target).exists()
    ]
    return broken


def test_every_path_the_docs_name_exists() -> None:
    assert [problem for page in pages() for problem in broken_paths(page)] == []


def test_a_missing_path_is_found() -> None:
    page = ROOT / "docs" / "architecture.md"
    assert broken_paths(page) == []
    text = page.read_text(encoding="utf-8") + "\nSee `services/ledger/gone.py` and [this](nowhere.md).\n"
    assert broken_paths(page, text) == [
        "docs/architecture.md: `services/ledger/gone.py`",
        "docs/architecture.md: link nowhere.md",
    ]
