"""Product documentation pages, rendered from the live catalog in English or Chinese.

`GET /v1/docs` lists the pages; `GET /v1/docs/{page}` answers JSON (structured sections), Markdown or
plain text, chosen by `?format=` or else the Accept header. The language comes from `?lang=` or else
Accept-Language (English by default).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Header, Query, Request, Response
from pydantic import BaseModel

from gateway import docs
from gateway.docs.source import LiveCatalog
from gateway.problems import Problem

router = APIRouter(prefix="/v1/docs", tags=["docs"])

Format = Literal["json", "markdown", "text"]
_FORMATS: dict[str, Format] = {"json": "json", "markdown": "markdown", "md": "markdown", "text": "text"}
_MEDIA_FORMATS: dict[str, Format] = {
    "application/json": "json",
    "text/markdown": "markdown",
    "text/x-markdown": "markdown",
    "text/plain": "text",
}


class DocSection(BaseModel):
    heading: str
    lines: list[str]


class DocPage(BaseModel):
    page: str
    lang: str
    section_label: str
    title: str
    subtitle: str
    date: str
    view_label: str
    sections: list[DocSection]
    catalog_version: int
    updated_at: datetime


class DocPageSummary(BaseModel):
    page: str
    section_label: str
    title: str
    url: str


class DocsIndex(BaseModel):
    lang: str
    pages: list[DocPageSummary]


@router.get("", summary="The documentation pages, with their titles in the requested language")
async def list_pages(
    lang: Annotated[str | None, Query(description="en or zh; default from Accept-Language")] = None,
    accept_language: Annotated[str | None, Header()] = None,
) -> DocsIndex:
    language = _language(lang, accept_language)
    summaries = [docs.page_summary(page, language) for page in docs.PAGE_IDS]
    return DocsIndex(
        lang=language,
        pages=[
            DocPageSummary(
                page=s.id,
                section_label=s.section_label,
                title=s.title,
                url=f"/v1/docs/{s.id}?lang={language}",
            )
            for s in summaries
        ],
    )


@router.get(
    "/{page}",
    summary="One documentation page, generated from the live catalog",
    response_model=DocPage,
    responses={200: {"content": {"text/markdown": {}, "text/plain": {}}}},
)
async def get_page(
    request: Request,
    page: str,
    lang: Annotated[str | None, Query(description="en or zh; default from Accept-Language")] = None,
    format: Annotated[str | None, Query(description="json, markdown or text; default from Accept")] = None,
    accept: Annotated[str | None, Header()] = None,
    accept_language: Annotated[str | None, Header()] = None,
) -> Response:
    page_id = next((known for known in docs.PAGE_IDS if known == page), None)
    if page_id is None:
        raise Problem(404, "unknown_page", f"no documentation page {page!r}", pages=list(docs.PAGE_IDS))
    language = _language(lang, accept_language)
    fmt = _format(format, accept)
    source: LiveCatalog = request.app.state.docs_catalog
    rendered = docs.render(page_id, language, await source.snapshot())
    headers = {"Content-Language": language, "Vary": "Accept, Accept-Language", "Cache-Control": "no-cache"}
    if fmt == "markdown":
        return Response(
            docs.to_markdown(rendered), media_type="text/markdown; charset=utf-8", headers=headers
        )
    if fmt == "text":
        return Response(docs.to_text(rendered), media_type="text/plain; charset=utf-8", headers=headers)
    body = DocPage(
        page=rendered.id,
        lang=rendered.lang,
        section_label=rendered.section_label,
        title=rendered.title,
        subtitle=rendered.subtitle,
        date=rendered.date,
        view_label=rendered.view_label,
        sections=[DocSection(heading=s.heading, lines=list(s.lines)) for s in rendered.sections],
        catalog_version=rendered.catalog_version,
        updated_at=rendered.updated_at,
    )
    return Response(body.model_dump_json(), media_type="application/json", headers=headers)


def _language(lang: str | None, accept_language: str | None) -> docs.Lang:
    if lang is not None:
        chosen = _supported_language(lang)
        if chosen is None:
            raise Problem(
                400,
                "unsupported_language",
                f"language {lang!r} is not supported",
                supported=list(docs.LANGUAGES),
            )
        return chosen
    # Accept-Language is a preference, not a demand: take the best supported one, else English.
    for tag, _ in _ranked(accept_language):
        chosen = _supported_language(tag)
        if chosen is not None:
            return chosen
    return "en"


def _supported_language(tag: str) -> docs.Lang | None:
    primary = tag.strip().lower().split("-")[0]
    for lang in docs.LANGUAGES:
        if primary == lang:
            return lang
    return None


def _format(format: str | None, accept: str | None) -> Format:
    if format is not None:
        chosen = _FORMATS.get(format.strip().lower())
        if chosen is None:
            raise Problem(
                400,
                "unsupported_format",
                f"format {format!r} is not supported",
                supported=["json", "markdown", "text"],
            )
        return chosen
    for media, _ in _ranked(accept):
        if media in _MEDIA_FORMATS:
            return _MEDIA_FORMATS[media]
        if media in ("*/*", "application/*"):
            return "json"
    return "json"


def _ranked(header: str | None) -> list[tuple[str, float]]:
    """The values of an Accept-style header, best first (q=0 dropped, ties keep header order)."""
    ranked: list[tuple[str, float]] = []
    for part in (header or "").split(","):
        value, *params = (p.strip() for p in part.split(";"))
        if not value:
            continue
        quality = 1.0
        for param in params:
            name, _, number = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(number)
                except ValueError:
                    quality = 0.0
        if quality > 0:
            ranked.append((value.lower(), quality))
    return sorted(ranked, key=lambda item: -item[1])
