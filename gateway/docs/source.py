"""Where the docs read the catalog: the catalog service itself, asked on every request.

Each read is a `GetCatalog` carrying the version already held; the service answers `not_modified` while
nothing changed, so the common case moves no data, and any change (a disabled model, a new price) is seen
by the very next request. The gateway keeps no copy that could go stale.
"""

from __future__ import annotations

import grpc

from atelier.catalog.v1 import catalog_pb2, catalog_pb2_grpc


class LiveCatalog:
    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._stub = catalog_pb2_grpc.CatalogServiceStub(channel)
        self._last: catalog_pb2.CatalogSnapshot | None = None

    async def snapshot(self) -> catalog_pb2.CatalogSnapshot:
        last = self._last
        request = catalog_pb2.GetCatalogRequest(known_version=last.version if last is not None else 0)
        reply: catalog_pb2.GetCatalogResponse = await self._stub.GetCatalog(request)
        if reply.not_modified and last is not None:
            return last
        self._last = reply.catalog
        return reply.catalog
