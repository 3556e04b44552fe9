"""What every request meets before any route runs, with no service behind the gateway but the session
check: text PostgreSQL cannot store is a 400 naming the field on every route, and a body over the upload
limit is a 413 that the gateway stops reading at the limit."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, RouteContext, iter_route_contexts

from gateway.app import create_app
from gateway.settings import GatewaySettings
from tests.gateway_app import gateway_settings, serving
from tests.infra import Infra
from tests.tokens import as_user, live_sessions

LIMIT = 256 * 1024
CHUNK = 16 * 1024
OFFERED = 64 * 1024 * 1024


@pytest.fixture
async def settings(infra: Infra) -> AsyncIterator[GatewaySettings]:
    """Only the session check answers (`tests.tokens.live_sessions`): every other service is down."""
    async with live_sessions() as accounts:
        yield gateway_settings(infra, upload_max_bytes=LIMIT, accounts_addr=accounts)


@pytest.fixture
async def client(settings: GatewaySettings) -> AsyncIterator[tuple[httpx.AsyncClient, list[RouteContext]]]:
    app = create_app(settings)
    routes = [r for r in iter_route_contexts(app.routes) if isinstance(r.original_route, APIRoute)]
    async with serving(app, headers=as_user("u_edge")) as http:
        yield http, routes


def assert_invalid_text(answer: httpx.Response, field: str, location: str) -> None:
    assert answer.status_code == 400, (answer.request.method, answer.request.url, answer.text)
    assert answer.headers["content-type"].startswith("application/problem+json")
    body = answer.json()
    assert (body["code"], body["field"], body["location"]) == ("invalid_text", field, location), body


def _url(route: RouteContext, poisoned: str | None) -> str:
    assert route.path is not None
    return re.sub(
        r"{([^}:]+)(:[^}]*)?}",
        lambda m: "a%00b" if m.group(1) == poisoned else "x",
        route.path,
    )


def _params(dependant: Dependant, where: str) -> set[str]:
    """Names of a route's path or query parameters, its dependencies' included."""
    own = dependant.path_params if where == "path" else dependant.query_params
    names = {param.alias or param.name for param in own}
    for sub in dependant.dependencies:
        names |= _params(sub, where)
    return names


def _method(route: RouteContext) -> str:
    assert route.methods is not None
    return min(route.methods - {"HEAD"})


async def test_every_path_and_query_parameter_of_every_route_refuses_nul(
    client: tuple[httpx.AsyncClient, list[RouteContext]],
) -> None:
    http, routes = client
    checked = 0
    for route in routes:
        if route.methods == {"HEAD"}:
            continue  # no body to read the problem from; its GET twin takes the same parameters
        method = _method(route)
        for name in _params(route.dependant, "path"):
            assert_invalid_text(await http.request(method, _url(route, name)), name, "path")
            checked += 1
        for name in _params(route.dependant, "query"):
            answer = await http.request(method, _url(route, None), params={name: "a\x00b"})
            assert_invalid_text(answer, name, "query")
            checked += 1
    assert checked > 20  # the walk really found the routes' parameters


async def test_every_json_body_refuses_nul_and_lone_surrogates(
    client: tuple[httpx.AsyncClient, list[RouteContext]],
) -> None:
    http, routes = client
    with_body = [r for r in routes if r.body_field is not None]
    assert len(with_body) > 10
    for route in with_body:
        answer = await http.request(_method(route), _url(route, None), json={"name": "ok", "title": "a\x00"})
        assert_invalid_text(answer, "/title", "body")
    # Nested values are named by JSON pointer; a \ud800 escape decodes to an unpaired surrogate.
    nested = {"kind": "image", "inputs": [{"upload_id": "u"}, {"output_id": "o\x00", "role": "style"}]}
    assert_invalid_text(await http.post("/v1/tasks", json=nested), "/inputs/1/output_id", "body")
    surrogate = await http.post(
        "/v1/copy/conversations",
        content=b'{"model": "m", "title": "\\ud800 x"}',
        headers={"Content-Type": "application/json"},
    )
    assert_invalid_text(surrogate, "/title", "body")
    key = await http.post(
        "/v1/copy/conversations", json={"model": "m", "a/b~\x00": 1}, headers={"Idempotency-Key": "k"}
    )
    assert_invalid_text(key, "/a~1b~0\\u0000", "body")


async def test_form_bodies_are_checked_too(client: tuple[httpx.AsyncClient, list[RouteContext]]) -> None:
    http, _ = client
    answer = await http.post(
        "/callbacks/alipay",
        content=b"out_trade_no=o1&subject=a%00b",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert_invalid_text(answer, "subject", "body")


async def test_clean_text_passes_the_edge(client: tuple[httpx.AsyncClient, list[RouteContext]]) -> None:
    http, _ = client
    # No generation service is running: getting that far means the edge let the request through.
    answer = await http.post("/v1/copy/conversations", json={"model": "m", "title": "写一首诗 ✓ \t\n"})
    assert answer.status_code == 503, answer.text


def _counted(offered: int, seen: list[int]) -> AsyncIterator[bytes]:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(offered // CHUNK):
            seen.append(CHUNK)
            yield b"\x89" * CHUNK

    return chunks()


def assert_too_large(answer: httpx.Response) -> None:
    assert answer.status_code == 413, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = answer.json()
    assert body["code"] == "payload_too_large"
    assert body["limit"] == LIMIT


async def test_a_streamed_upload_over_the_limit_is_cut_off_at_the_limit(
    client: tuple[httpx.AsyncClient, list[RouteContext]],
) -> None:
    http, _ = client
    seen: list[int] = []
    # No Content-Length: the body arrives chunked, so only counting while reading can stop it.
    answer = await http.post(
        "/v1/uploads", content=_counted(OFFERED, seen), headers={"Content-Type": "image/png"}
    )
    assert "content-length" not in answer.request.headers
    assert_too_large(answer)
    assert sum(seen) <= LIMIT + CHUNK, f"the gateway read {sum(seen)} bytes past a {LIMIT}-byte limit"


async def test_a_declared_oversize_body_is_refused_unread_on_any_route(
    client: tuple[httpx.AsyncClient, list[RouteContext]],
) -> None:
    http, _ = client
    for method, path in (("POST", "/v1/uploads"), ("POST", "/v1/tasks"), ("POST", "/v1/tasks/t/cancel")):
        seen: list[int] = []
        request = http.build_request(method, path, content=_counted(2 * LIMIT, seen))
        request.headers["Content-Length"] = str(2 * LIMIT)
        request.headers["Content-Type"] = "application/json"
        answer = await http.send(request)
        assert_too_large(answer)
        assert sum(seen) <= CHUNK, (path, sum(seen))


async def test_a_body_within_the_limit_reaches_the_route(
    client: tuple[httpx.AsyncClient, list[RouteContext]],
) -> None:
    http, _ = client
    answer = await http.post("/v1/uploads", content=b"\x89" * LIMIT, headers={"Content-Type": "image/png"})
    assert answer.status_code == 503  # read whole and passed on to the (absent) generation service


async def test_a_pathologically_nested_body_is_no_500(
    client: tuple[httpx.AsyncClient, list[RouteContext]],
) -> None:
    http, _ = client
    deep = b"[" * 100_000 + b"]" * 100_000
    parsed_by_the_route = await http.post(
        "/v1/tasks", content=deep, headers={"Content-Type": "application/json"}
    )
    assert parsed_by_the_route.status_code == 400
    # The cancel route reads no body: the edge lets what it cannot parse through (503: no generation).
    ignored = await http.post(
        "/v1/tasks/t/cancel", content=deep, headers={"Content-Type": "application/json"}
    )
    assert ignored.status_code == 503, ignored.text
