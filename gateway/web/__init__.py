"""The web console: static ES modules served by the gateway, no build step.

`GET /<page>` (and anything below it) answers the one HTML shell; the browser-side router draws the
page from the public HTTP API. Assets are served from `/assets/`. Only the page names listed in
`PAGES` are claimed, so the console never shadows an API route, whatever the router order.
"""

from __future__ import annotations

import mimetypes
import re
from pathlib import Path
from typing import Final

from fastapi import APIRouter
from fastapi.responses import FileResponse, Response

from gateway.problems import Problem

STATIC: Final = Path(__file__).resolve().parent / "static"
PAGES: Final = (
    "login",
    "register",
    "verify-email",
    "forgot-password",
    "reset-password",
    "pricing",
    "billing",
    "copy",
    "image",
    "video",
    "workflow",
    "tasks",
    "usage",
    "guide",
    "account",
    "admin",
)
_TYPES: Final = {
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".svg": "image/svg+xml",
    ".html": "text/html; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
    ".ico": "image/x-icon",
}
# Scripts come only from this origin (no inline script, no eval). Generated media may live on a blob
# store's origin (signed URLs), so images and media may load from anywhere over http(s).
CONTENT_SECURITY_POLICY: Final = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data: blob: https: http:",
        "media-src 'self' blob: https: http:",
        "connect-src 'self'",
        "frame-ancestors 'none'",
        "form-action 'self'",
        "base-uri 'none'",
        "object-src 'none'",
    )
)
_PAGE_HEADERS: Final = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    # Verification and reset links carry a token in the path: never send it to another site.
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-cache",
}

_ASSET_PATH: Final = re.compile(r"[A-Za-z0-9_\-]+(?:[./][A-Za-z0-9_\-]+)*")

router = APIRouter(include_in_schema=False)


def _shell() -> Response:
    return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8", headers=_PAGE_HEADERS)


@router.get("/")
async def home() -> Response:
    return _shell()


def _page_route(name: str) -> None:
    async def page() -> Response:
        return _shell()

    async def subpage(rest: str) -> Response:
        return _shell()

    router.add_api_route(f"/{name}", page, methods=["GET"], name=f"web:{name}")
    router.add_api_route(f"/{name}/{{rest:path}}", subpage, methods=["GET"], name=f"web:{name}:sub")


for _name in PAGES:
    _page_route(_name)


@router.get("/assets/{path:path}")
async def asset(path: str) -> Response:
    """A file under `static/`, never outside it; revalidated on each load (ETag) since there is no
    build step to fingerprint names."""
    if not _ASSET_PATH.fullmatch(path) or ".." in path.split("/"):
        raise Problem(404, "not_found", "no such asset")
    target = (STATIC / path).resolve()
    if not target.is_relative_to(STATIC) or not target.is_file():
        raise Problem(404, "not_found", "no such asset")
    media_type = (
        _TYPES.get(target.suffix) or mimetypes.guess_type(target.name)[0] or "application/octet-stream"
    )
    return FileResponse(
        target,
        media_type=media_type,
        headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"},
    )
