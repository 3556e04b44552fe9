from __future__ import annotations

from datetime import timedelta

from pydantic import Field

from kit.settings import ServiceSettings


class LedgerSettings(ServiceSettings):
    database_url: str = "postgresql://postgres@127.0.0.1:5432/atelier_ledger"
    grpc_port: int = 50053
    # How often the sweeper voids expired holds and expires unpaid recharge orders.
    sweep_interval_seconds: float = Field(default=5.0, gt=0)

    def expiry_grace(self) -> timedelta:
        """How long past its expiry a pending hold may stay before reconcile reports it."""
        return timedelta(seconds=2 * self.sweep_interval_seconds)
