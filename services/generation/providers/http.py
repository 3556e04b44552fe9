"""The HTTP adapters by catalog adapter kind."""

from __future__ import annotations

from atelier.catalog.v1 import catalog_pb2
from services.generation.providers.base import Provider, ProviderError


def adapter_for(kind: int, *, base_url: str, api_key: str, timeout: float) -> Provider:
    raise ProviderError(f"no adapter for channel kind {kind}", code="channel_misconfigured")


__all__ = ["adapter_for", "catalog_pb2"]
