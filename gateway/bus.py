"""The gateway's NATS connection: it reads events for live updates and keeps its rate limits in the
`RATELIMITS` key-value bucket (kit/bus.py); it owns no event stream."""

from __future__ import annotations

import asyncio
import logging

from gateway.settings import GatewaySettings
from kit.bus import Bus

log = logging.getLogger(__name__)


async def connect_bus(settings: GatewaySettings) -> Bus | None:
    try:
        return await asyncio.wait_for(Bus.from_settings(settings, name="atelier-gateway"), timeout=3)
    except Exception as exc:
        log.warning("NATS not reachable yet: %r", exc)
        return None
