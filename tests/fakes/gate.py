"""A switch that makes a fake's RPC hang after its effect, to test callers killed mid-call."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field


@dataclass
class Gate:
    """Makes an RPC hang after it has applied its effect, until opened (or the caller is killed)."""

    armed: bool = False
    reached: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    async def maybe_block(self) -> None:
        if self.armed:
            self.reached.set()
            await self.release.wait()
