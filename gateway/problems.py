"""RFC 9457 problem+json for every error the gateway answers, mapped in one place."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

import grpc
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from kit.errors import DomainError, from_rpc_error
from kit.telemetry import current_trace_id

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"

_STATUS_BY_GRPC = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.FAILED_PRECONDITION: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}
WWW_AUTHENTICATE = {"WWW-Authenticate": 'Bearer realm="atelier"'}
# A backend that is down is usually back within seconds (a pod restarting, a leader election): clients
# may retry the same request, with its Idempotency-Key, after this long.
RETRY_AFTER_SECONDS = 2
_HEADERS_BY_STATUS: dict[int, Mapping[str, str]] = {
    401: WWW_AUTHENTICATE,  # RFC 6750 §3: say how to authenticate
    503: {"Retry-After": str(RETRY_AFTER_SECONDS)},
}
# Codes whose HTTP status says more than their gRPC status does.
_STATUS_BY_CODE = {
    "insufficient_balance": 402,
    "email_not_verified": 403,
}


class Problem(Exception):
    """Raise from a route to answer with problem+json."""

    def __init__(
        self, status: int, code: str, detail: str, *, headers: Mapping[str, str] | None = None, **extra: Any
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = headers
        self.extra = extra


def payload_too_large(limit: int) -> Problem:
    return Problem(413, "payload_too_large", f"request bodies are limited to {limit} bytes", limit=limit)


def problem_response(
    request: Request,
    status: int,
    code: str,
    detail: str,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": f"https://docs.atelier.example/problems/{code}",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "code": code,
        "detail": detail,
        "instance": request.url.path,
    }
    trace_id = current_trace_id()
    if trace_id:
        body["trace_id"] = trace_id
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def from_domain_error(request: Request, error: DomainError) -> JSONResponse:
    status = _STATUS_BY_CODE.get(error.code) or _STATUS_BY_GRPC.get(error.status, 400)
    headers = _HEADERS_BY_STATUS.get(status)
    return problem_response(request, status, error.code, error.message, headers=headers, **error.details)


def install(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(request, exc.status, exc.code, exc.detail, headers=exc.headers, **exc.extra)

    @app.exception_handler(DomainError)
    async def _domain(request: Request, exc: DomainError) -> JSONResponse:
        return from_domain_error(request, exc)

    @app.exception_handler(grpc.aio.AioRpcError)
    async def _rpc(request: Request, exc: grpc.aio.AioRpcError) -> JSONResponse:
        domain = from_rpc_error(exc)
        if domain is not None:
            return from_domain_error(request, domain)
        status = _STATUS_BY_GRPC.get(exc.code(), 502)
        log.warning("upstream call failed: %s %s", exc.code().name, exc.details())
        return problem_response(
            request,
            status,
            "upstream_error",
            "a backend service could not answer",
            headers=_HEADERS_BY_STATUS.get(status),
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {
                "loc": [str(part) for part in err.get("loc", ())],
                "msg": str(err.get("msg", "")),
                "type": err.get("type"),
            }
            for err in exc.errors()
        ]
        return problem_response(request, 422, "invalid_request", "the request is not valid", errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 413:  # FastAPI's `max_body_size` stopped reading the body at the limit
            return await _problem(request, payload_too_large(request.app.state.settings.upload_max_bytes))
        code = HTTPStatus(exc.status_code).phrase.lower().replace(" ", "_")
        return problem_response(request, exc.status_code, code, str(exc.detail), headers=exc.headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem_response(request, 500, "internal_error", "something went wrong on our side")
