"""The client's address, for per-IP login limits and the address stored with a session.

X-Forwarded-For is written by whoever sends the request, and each proxy appends the address it saw
on the right. So the header is believed only on a connection from a configured proxy, and then only
its entry `hops` from the right (what our outermost proxy saw); never the leftmost entry, which the
client chose. uvicorn's own proxy-header handling is off (`gateway.__main__`): this is the one place
that decides.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from gateway.settings import GatewaySettings

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class ClientAddress:
    proxies: tuple[Network, ...]
    hops: int

    @classmethod
    def from_settings(cls, settings: GatewaySettings) -> ClientAddress:
        return cls(tuple(settings.proxy_networks()), settings.forwarded_for_hops)

    def resolve(self, peer: str | None, forwarded_for: list[str]) -> str:
        """The client of a connection from `peer` that carried these X-Forwarded-For headers."""
        if peer is None:
            return "unknown"
        if not self.proxies or not forwarded_for or not self._is_proxy(peer):
            return peer
        entries = [entry.strip() for header in forwarded_for for entry in header.split(",")]
        if len(entries) < self.hops:
            return peer  # fewer hops than our proxies add: not written by them
        candidate = entries[-self.hops]
        try:
            return str(ipaddress.ip_address(candidate))
        except ValueError:
            return peer

    def _is_proxy(self, peer: str) -> bool:
        try:
            address = ipaddress.ip_address(peer)
        except ValueError:
            return False
        return any(address in network for network in self.proxies)
