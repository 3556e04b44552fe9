"""Provider adapters, chosen per catalog channel (adapter kind + base URL + key reference)."""

from __future__ import annotations

import os

from atelier.catalog.v1 import catalog_pb2
from services.generation.providers.base import Provider
from services.generation.providers.local import LocalProvider
from services.generation.settings import GenerationSettings


class ProviderRegistry:
    """One adapter (and its HTTP connection pool) per channel; the local provider when none is bound."""

    def __init__(self, settings: GenerationSettings) -> None:
        self.settings = settings
        self.local = LocalProvider(
            delay=settings.local_delay_seconds, failure_fraction=settings.local_failure_fraction
        )
        self._adapters: dict[tuple[int, str, str], Provider] = {}

    def api_key(self, ref: str) -> str:
        if not ref:
            return ""
        return self.settings.provider_keys.get(ref) or os.environ.get(ref, "")

    def for_channel(self, channel: catalog_pb2.ChannelBinding) -> Provider:
        if channel.adapter in (catalog_pb2.ADAPTER_KIND_UNSPECIFIED, catalog_pb2.ADAPTER_KIND_LOCAL):
            return self.local
        cache_key = (channel.adapter, channel.base_url, channel.api_key_ref)
        adapter = self._adapters.get(cache_key)
        if adapter is None:
            adapter = self._make(channel)
            self._adapters[cache_key] = adapter
        return adapter

    def _make(self, channel: catalog_pb2.ChannelBinding) -> Provider:
        from services.generation.providers.http import adapter_for

        return adapter_for(
            channel.adapter,
            base_url=channel.base_url,
            api_key=self.api_key(channel.api_key_ref),
            timeout=self.settings.upstream_timeout_seconds,
        )

    async def aclose(self) -> None:
        for adapter in self._adapters.values():
            await adapter.aclose()
        self._adapters.clear()
