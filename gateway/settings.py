from __future__ import annotations

from kit.settings import Settings


class GatewaySettings(Settings):
    http_host: str = "0.0.0.0"
    http_port: int = 8000
    public_url: str = "http://127.0.0.1:8000"
    readiness_timeout_seconds: float = 1.0
