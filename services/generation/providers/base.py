"""What every provider adapter speaks: a job in, artifacts (or an upstream operation to poll) out.

Synchronous upstreams (OpenAI Images, Seedream, xAI images, Imagen, the local provider) answer `submit`
with the artifacts. Asynchronous ones (Seedance, xAI video, Veo) answer with an operation id that the
worker stores *before* polling, so that a redelivered job resumes polling instead of paying twice.
"""

from __future__ import annotations

import base64
import email.utils
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

IMAGE = "image"
VIDEO = "video"
TEXT = "text"


@dataclass(frozen=True)
class InputImage:
    data: bytes
    mime_type: str
    # reference | first_frame | edit | product
    role: str

    def data_url(self) -> str:
        return f"data:{self.mime_type};base64,{base64.b64encode(self.data).decode()}"


@dataclass(frozen=True)
class ChatMessage:
    # user | assistant
    role: str
    text: str


@dataclass(frozen=True)
class ProviderJob:
    kind: str
    # The upstream model id of the channel (the catalog code when none is bound).
    model: str
    prompt: str = ""
    ratio: str = ""
    resolution: str = ""
    duration_seconds: int = 0
    n: int = 1
    capability: str = ""
    inputs: tuple[InputImage, ...] = ()
    system_instruction: str = ""
    max_output_tokens: int = 0
    messages: tuple[ChatMessage, ...] = ()
    # Stable per task: local failure injection and upstream idempotency headers hash it.
    task_id: str = ""


@dataclass(frozen=True)
class Artifact:
    """One output: bytes in hand, or a URL to download (providers delete theirs, so we copy)."""

    mime_type: str
    data: bytes | None = None
    url: str | None = None
    # Headers needed to download `url` (Veo downloads need the API key).
    download_headers: Mapping[str, str] = field(default_factory=dict)
    text: str = ""
    revised_prompt: str = ""


@dataclass(frozen=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0


@dataclass(frozen=True)
class Submitted:
    """The answer to a submit: either an operation to poll or the finished artifacts."""

    operation_id: str | None = None
    artifacts: tuple[Artifact, ...] = ()
    # Items that failed while others succeeded (Ark answers per item).
    failures: tuple[ProviderError, ...] = ()
    usage: Usage | None = None


@dataclass(frozen=True)
class Polled:
    done: bool
    progress: int = 0
    artifacts: tuple[Artifact, ...] = ()
    error: ProviderError | None = None


@dataclass(frozen=True)
class TextChunk:
    text: str = ""
    usage: Usage | None = None


class ProviderError(Exception):
    """An upstream failure, classified: retryable ones carry the wait the upstream asked for."""

    def __init__(
        self,
        message: str,
        *,
        code: str = "upstream_error",
        retryable: bool = False,
        retry_after: float | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.retryable = retryable
        self.retry_after = retry_after
        self.status = status

    def __repr__(self) -> str:
        return f"ProviderError({self.code!r}, {self.message!r}, retryable={self.retryable})"


class Provider(Protocol):
    async def submit(self, job: ProviderJob) -> Submitted: ...

    async def poll(self, job: ProviderJob, operation_id: str) -> Polled: ...

    async def cancel(self, operation_id: str) -> bool:
        """Cancels upstream where the API allows; False when it cannot."""
        ...

    def stream_text(self, job: ProviderJob) -> AsyncIterator[TextChunk]: ...

    async def aclose(self) -> None: ...


class Adapter:
    """What adapters share: `submit` goes to the method named for the job's kind, and a kind an adapter
    does not override is `unsupported_spec`; there is nothing to poll or cancel, and text streams in one
    piece, unless an adapter's upstream does better."""

    async def submit(self, job: ProviderJob) -> Submitted:
        makers: dict[str, Callable[[ProviderJob], Awaitable[Submitted]]] = {
            TEXT: self.text,
            IMAGE: self.images,
            VIDEO: self.video,
        }
        make = makers.get(job.kind)
        if make is None:
            raise ProviderError(f"unknown kind {job.kind!r}", code="unsupported_spec")
        return await make(job)

    async def text(self, job: ProviderJob) -> Submitted:
        raise self._unsupported(job)

    async def images(self, job: ProviderJob) -> Submitted:
        raise self._unsupported(job)

    async def video(self, job: ProviderJob) -> Submitted:
        raise self._unsupported(job)

    def _unsupported(self, job: ProviderJob) -> ProviderError:
        return ProviderError(f"{type(self).__name__} does not make {job.kind}", code="unsupported_spec")

    async def poll(self, job: ProviderJob, operation_id: str) -> Polled:
        raise ProviderError("this provider has no operations to poll", code="unsupported_operation")

    async def cancel(self, operation_id: str) -> bool:
        return False

    async def stream_text(self, job: ProviderJob) -> AsyncIterator[TextChunk]:
        submitted = await self.submit(job)
        for artifact in submitted.artifacts:
            yield TextChunk(text=artifact.text)
        yield TextChunk(usage=submitted.usage)

    async def aclose(self) -> None:
        return None


# -- error classification ------------------------------------------------------------------------

RETRYABLE_STATUSES = frozenset({408, 409, 429})
CONTENT_FILTER_MARKERS = ("sensitive", "content_policy", "content filter", "moderation", "safety", "rai")


def parse_retry_after(
    headers: Mapping[str, str], body: Any = None, *, now: float | None = None
) -> float | None:
    """The wait an upstream asked for: `retry-after-ms`, then `retry-after` (seconds or an HTTP date),
    then Google's `RetryInfo.retryDelay` ("37s") in the error details."""
    lowered = {k.lower(): v for k, v in headers.items()}
    if (ms := lowered.get("retry-after-ms")) is not None:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    if (value := lowered.get("retry-after")) is not None:
        try:
            return max(0.0, float(value))
        except ValueError:
            try:
                parsed = email.utils.parsedate_to_datetime(value)
            except (TypeError, ValueError):
                parsed = None
            if parsed is not None:
                return max(0.0, parsed.timestamp() - (now if now is not None else time.time()))
    if isinstance(body, dict):
        error = body.get("error")
        details = error.get("details") if isinstance(error, dict) else None
        for detail in details or ():
            if isinstance(detail, dict) and str(detail.get("@type", "")).endswith("google.rpc.RetryInfo"):
                delay = str(detail.get("retryDelay", ""))
                match = re.fullmatch(r"(\d+(?:\.\d+)?)s", delay)
                if match:
                    return float(match.group(1))
    return None


def error_fields(body: Any) -> tuple[str, str]:
    """(code, message) from the error shapes upstreams use: `{error: {code, message}}`,
    `{error: "..", code: ..}` (xAI) or plain text."""
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            code = error.get("code") or error.get("status") or error.get("type") or ""
            return str(code), str(error.get("message") or "")
        if isinstance(error, str):
            return str(body.get("code") or ""), error
        if "message" in body:
            return str(body.get("code") or ""), str(body["message"])
    return "", str(body or "")[:500]


def is_content_filtered(code: str, message: str) -> bool:
    text = f"{code} {message}".lower()
    return any(marker in text for marker in CONTENT_FILTER_MARKERS)


def reported_failure(body: Any, fallback: str) -> ProviderError:
    """A failure an upstream reports inside a successful answer (a failed item or task): refused by its
    content filter, or failed."""
    code, message = error_fields(body)
    kind = "content_filtered" if is_content_filtered(code, message) else "generation_failed"
    return ProviderError(message or fallback, code=kind)


def classify_response(response: httpx.Response) -> ProviderError:
    """Turns a non-2xx upstream answer into a classified `ProviderError`."""
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text
    code, message = error_fields(body)
    status = response.status_code
    retry_after = parse_retry_after(response.headers, body)
    should_retry = response.headers.get("x-should-retry", "").lower()
    retryable = status in RETRYABLE_STATUSES or status >= 500
    if should_retry == "true":
        retryable = True
    elif should_retry == "false":
        retryable = False
    if not retryable and is_content_filtered(code, message):
        return ProviderError(
            message or "the request was refused by the provider's content filter",
            code="content_filtered",
            status=status,
        )
    kind = "upstream_rate_limited" if status == 429 else "upstream_error"
    return ProviderError(
        message or f"upstream answered HTTP {status}",
        code=kind if retryable else "upstream_rejected",
        retryable=retryable,
        retry_after=retry_after,
        status=status,
    )


def transport_error(exc: httpx.HTTPError) -> ProviderError:
    if isinstance(exc, httpx.TimeoutException):
        return ProviderError("the provider did not answer in time", code="upstream_timeout", retryable=True)
    return ProviderError(f"the provider could not be reached: {type(exc).__name__}", retryable=True)
