"""What every request must satisfy before any route runs: a body within the upload limit
(`BodyLimit`), and no text PostgreSQL cannot store (`kit.text`) in its path parameters, query, headers
or body (`check_request`).
"""

from __future__ import annotations

import email.message
import json
from urllib.parse import parse_qsl

from fastapi import Request
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.problems import payload_too_large, problem_response
from kit.text import ascii_digits, find_in_json, storable, unstorable

_FORM = "application/x-www-form-urlencoded"


class BodyTooLarge(HTTPException):
    """Raised from `receive` past the limit: whoever was reading gets it, and problem+json answers it."""

    def __init__(self) -> None:
        super().__init__(413)


class BodyLimit:
    """Stops reading a request body at `limit` bytes. A body declared larger is refused unread; one
    without a length (chunked) or with a false one is cut off where it crosses the limit, so the
    gateway never holds more than the limit of any request.

    (Starlette's own limiter answers a declared-too-large body in plain text, whatever the app says.)
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        if ascii_digits(declared) and int(declared) > self.limit:
            problem = payload_too_large(self.limit)
            response = problem_response(
                Request(scope), problem.status, problem.code, problem.detail, **problem.extra
            )
            await response(scope, receive, send)
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise BodyTooLarge
            return message

        await self.app(scope, limited, send)


async def check_request(request: Request) -> None:
    """The app-wide dependency: it sees the matched route's path parameters by name, and the body it
    reads is the one the route reads next (Starlette keeps it)."""
    for name, value in request.path_params.items():
        if isinstance(value, str) and not storable(value):
            raise unstorable(name, "path")
    for name, value in request.query_params.multi_items():
        if not (storable(name) and storable(value)):
            raise unstorable(name, "query")
    for name, value in request.headers.items():
        if not storable(value):
            raise unstorable(name, "header")
    media = _media_type(request.headers.get("content-type", ""))
    if media == "application/json" or media.endswith("+json"):
        await _check_json(request)
    elif media == _FORM:
        await _check_form(request)


def _media_type(content_type: str) -> str:
    message = email.message.Message()
    message["content-type"] = content_type
    return message.get_content_type() if content_type else ""


async def _check_json(request: Request) -> None:
    body = await request.body()
    if not body:
        return
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        return  # what cannot be parsed is the route's to refuse (4xx), or no concern of a route at all
    pointer = find_in_json(document)
    if pointer is not None:
        raise unstorable(pointer, "body")  # "" is the whole document (RFC 6901)


async def _check_form(request: Request) -> None:
    body = await request.body()
    for name, value in parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True):
        if not (storable(name) and storable(value)):
            raise unstorable(name, "body")
