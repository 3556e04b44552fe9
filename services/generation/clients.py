"""gRPC clients of the services generation calls: catalog (Quote) and ledger (Hold, Release)."""

from __future__ import annotations

import datetime as dt

from google.protobuf.duration_pb2 import Duration

from atelier.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from atelier.common.v1 import common_pb2
from atelier.ledger.v1 import ledger_pb2, ledger_pb2_grpc
from kit import grpc_client
from kit.money import Credits
from kit.settings import Settings


class Clients:
    """Channels are opened at startup and closed at shutdown."""

    def __init__(self, settings: Settings) -> None:
        self._catalog_channel = grpc_client.to_peer(settings, "catalog", workload="generation")
        self._ledger_channel = grpc_client.to_peer(settings, "ledger", workload="generation")
        self.catalog = catalog_pb2_grpc.CatalogServiceStub(self._catalog_channel)
        self.ledger = ledger_pb2_grpc.LedgerServiceStub(self._ledger_channel)

    async def quote(self, request: catalog_pb2.QuoteRequest) -> catalog_pb2.QuoteSnapshot:
        """The catalog's priced, validated snapshot; its domain errors (model_disabled,
        unsupported_spec, unsupported_capability) pass through unchanged."""
        response = await grpc_client.call(lambda: self.catalog.Quote(request))
        quote: catalog_pb2.QuoteSnapshot = response.quote
        return quote

    async def hold(
        self,
        *,
        hold_id: str,
        user_id: str,
        amount: Credits,
        ttl: dt.timedelta,
        reference_type: ledger_pb2.ReferenceType.ValueType,
        reference_id: str,
        metadata: dict[str, str],
    ) -> ledger_pb2.HoldResponse:
        """A pending debit; FAILED_PRECONDITION insufficient_balance passes through."""
        duration = Duration()
        duration.FromTimedelta(ttl)
        request = ledger_pb2.HoldRequest(
            transfer_id=hold_id,
            user_id=user_id,
            amount=common_pb2.Credits(milli=amount.milli),
            ttl=duration,
            reference=ledger_pb2.Reference(type=reference_type, id=reference_id),
            metadata=metadata,
        )
        response: ledger_pb2.HoldResponse = await grpc_client.call(lambda: self.ledger.Hold(request))
        return response

    async def release(self, *, hold_id: str, reason: str) -> None:
        """Compensation when a held submission could not be recorded."""
        request = ledger_pb2.ReleaseRequest(transfer_id=f"release:{hold_id}", hold_id=hold_id, reason=reason)
        await grpc_client.call(lambda: self.ledger.Release(request))

    async def close(self) -> None:
        await self._catalog_channel.close()
        await self._ledger_channel.close()
