"""Domain errors that carry their gRPC status and a stable machine code.

Services raise these; one server interceptor turns them into gRPC statuses (with the code in trailing
metadata), clients turn them back with `from_rpc_error`, and the gateway maps them to RFC 9457
problem+json in one place.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

import grpc

CODE_KEY = "atelier-code"
DETAILS_KEY = "atelier-details"


class DomainError(Exception):
    """The base of every error a service raises on purpose. A kind of error names its gRPC status in
    its class line, `class NotFound(DomainError, status=grpc.StatusCode.NOT_FOUND)`; its default code
    is the status's name in lower case ("not_found") unless the line gives `code=`."""

    status: ClassVar[grpc.StatusCode] = grpc.StatusCode.FAILED_PRECONDITION
    default_code: ClassVar[str] = "failed_precondition"

    def __init_subclass__(
        cls, *, status: grpc.StatusCode | None = None, code: str | None = None, **kwargs: Any
    ) -> None:
        super().__init_subclass__(**kwargs)
        if status is not None:
            cls.status = status
            cls.default_code = status.name.lower()
        if code is not None:
            cls.default_code = code

    def __init__(self, message: str, *, code: str | None = None, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.details = details

    def trailing_metadata(self) -> tuple[tuple[str, str], ...]:
        metadata: list[tuple[str, str]] = [(CODE_KEY, self.code)]
        if self.details:
            metadata.append((DETAILS_KEY, json.dumps(self.details, default=str)))
        return tuple(metadata)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code!r}, {self.message!r})"


class InvalidArgument(DomainError, status=grpc.StatusCode.INVALID_ARGUMENT): ...


class NotFound(DomainError, status=grpc.StatusCode.NOT_FOUND): ...


class AlreadyExists(DomainError, status=grpc.StatusCode.ALREADY_EXISTS): ...


class Conflict(DomainError, status=grpc.StatusCode.ABORTED, code="conflict"):
    """Same idempotency id with another body, or a state transition that lost a race."""


class FailedPrecondition(DomainError, status=grpc.StatusCode.FAILED_PRECONDITION): ...


class PermissionDenied(DomainError, status=grpc.StatusCode.PERMISSION_DENIED): ...


class Unauthenticated(DomainError, status=grpc.StatusCode.UNAUTHENTICATED): ...


class ResourceExhausted(DomainError, status=grpc.StatusCode.RESOURCE_EXHAUSTED, code="rate_limited"): ...


class Unavailable(DomainError, status=grpc.StatusCode.UNAVAILABLE): ...


_BY_STATUS: dict[grpc.StatusCode, type[DomainError]] = {
    cls.status: cls
    for cls in (
        InvalidArgument,
        NotFound,
        AlreadyExists,
        Conflict,
        FailedPrecondition,
        PermissionDenied,
        Unauthenticated,
        ResourceExhausted,
        Unavailable,
    )
}


def from_rpc_error(error: grpc.aio.AioRpcError) -> DomainError | None:
    """Rebuild the domain error a peer raised, or None when the failure was not a domain error."""
    metadata = {key: value for key, value in (error.trailing_metadata() or ()) if isinstance(value, str)}
    code = metadata.get(CODE_KEY)
    cls = _BY_STATUS.get(error.code())
    if code is None or cls is None:
        return None
    details: dict[str, Any] = {}
    if DETAILS_KEY in metadata:
        try:
            details = json.loads(metadata[DETAILS_KEY])
        except ValueError:
            details = {}
    return cls(error.details() or code, code=code, **details)
