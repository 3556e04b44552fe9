"""Shared plumbing of the HTTP adapters, and the adapter for a catalog adapter kind."""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from typing import Any

import httpx

from atelier.catalog.v1 import catalog_pb2
from services.generation.providers.base import (
    Adapter,
    Artifact,
    Polled,
    Provider,
    ProviderError,
    Submitted,
    classify_response,
    transport_error,
)


class HttpAdapter(Adapter):
    """An httpx client per channel; every non-2xx answer becomes a classified `ProviderError`."""

    def __init__(self, *, base_url: str, api_key: str, timeout: float) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.client = httpx.AsyncClient(timeout=httpx.Timeout(timeout, connect=min(10.0, timeout)))

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}

    async def request(self, method: str, path: str, body: Any = None) -> Any:
        try:
            response = await self.client.request(
                method, f"{self.base_url}/{path.lstrip('/')}", json=body, headers=self.headers()
            )
        except httpx.HTTPError as exc:
            raise transport_error(exc) from exc
        if response.status_code >= 400:
            raise classify_response(response)
        try:
            return response.json()
        except ValueError as exc:
            raise ProviderError("the provider answered with malformed JSON", retryable=True) from exc

    async def start_operation(self, path: str, body: Any, id_field: str) -> Submitted:
        """POSTs a long-running job; the id the upstream answers is what the worker stores and polls."""
        answer = await self.request("POST", path, body)
        if not answer.get(id_field):
            raise ProviderError("the provider returned no operation id", retryable=True)
        return Submitted(operation_id=str(answer[id_field]))

    async def aclose(self) -> None:
        await self.client.aclose()


def finished_video(url: str | None) -> Polled:
    """A finished operation's one video, to be copied from `url`; finished without one is a failure."""
    if not url:
        return Polled(done=True, error=ProviderError("the operation finished without a video"))
    return Polled(done=True, artifacts=(Artifact("video/mp4", url=url),))


def decode_b64(value: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except ValueError as exc:
        raise ProviderError("the provider returned an undecodable image", retryable=True) from exc


def image_artifact(item: Mapping[str, Any], mime_type: str) -> Artifact | None:
    """An image of an OpenAI-style `data` list: inline base64 first, else a URL to copy."""
    if item.get("b64_json"):
        return Artifact(mime_type, data=decode_b64(item["b64_json"]))
    if item.get("url"):
        return Artifact(mime_type, url=item["url"])
    return None


def ratio_parts(ratio: str) -> tuple[int, int]:
    match = re.fullmatch(r"(\d+):(\d+)", ratio or "1:1")
    return (int(match.group(1)), int(match.group(2))) if match else (1, 1)


def adapter_for(kind: int, *, base_url: str, api_key: str, timeout: float) -> Provider:
    from services.generation.providers.ark import ArkAdapter
    from services.generation.providers.gemini import GeminiAdapter
    from services.generation.providers.openai import OpenAIAdapter
    from services.generation.providers.xai import XaiAdapter

    adapters: dict[int, type[HttpAdapter]] = {
        catalog_pb2.ADAPTER_KIND_OPENAI: OpenAIAdapter,
        catalog_pb2.ADAPTER_KIND_ARK: ArkAdapter,
        catalog_pb2.ADAPTER_KIND_XAI: XaiAdapter,
        catalog_pb2.ADAPTER_KIND_GEMINI: GeminiAdapter,
    }
    adapter = adapters.get(kind)
    if adapter is None or not base_url:
        raise ProviderError(f"channel of kind {kind} is not configured", code="channel_misconfigured")
    return adapter(base_url=base_url, api_key=api_key, timeout=timeout)
