"""The fixed prose of the product documentation, in every supported language.

One table, keyed by message id, in the data file `text.toml`: English is the product document's wording,
Chinese says the same thing.
Every id exists in every language (a test checks it), so both languages render the same structure.
Placeholders in braces are filled by the renderer with data from the live catalog.
"""

from __future__ import annotations

import tomllib
from importlib import resources
from typing import Final, Literal

Lang = Literal["en", "zh"]
LANGUAGES: Final[tuple[Lang, ...]] = ("en", "zh")

# Message id -> language -> wording; read once, at import.
TEXT: Final[dict[str, dict[Lang, str]]] = tomllib.loads(
    resources.files(__package__).joinpath("text.toml").read_text(encoding="utf-8")
)

_MONTHS_EN: Final = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def t(key: str, lang: Lang, **values: object) -> str:
    """The message `key` in `lang`, with its placeholders filled."""
    template = TEXT[key][lang]
    return template.format(**values) if values else template


def has(key: str) -> bool:
    return key in TEXT


def format_date(year: int, month: int, day: int, lang: Lang) -> str:
    """ "Mar 14, 2026" / "2026年3月14日"."""
    if lang == "zh":
        return f"{year}年{month}月{day}日"
    return f"{_MONTHS_EN[month - 1]} {day}, {year}"
