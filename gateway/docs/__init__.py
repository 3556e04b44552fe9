"""Product documentation generated from the live catalog, in English and Chinese."""

from gateway.docs.render import (
    PAGE_IDS,
    Page,
    PageId,
    PageSummary,
    Section,
    page_summary,
    render,
    to_markdown,
    to_text,
)
from gateway.docs.text import LANGUAGES, Lang

__all__ = [
    "LANGUAGES",
    "PAGE_IDS",
    "Lang",
    "Page",
    "PageId",
    "PageSummary",
    "Section",
    "page_summary",
    "render",
    "to_markdown",
    "to_text",
]
