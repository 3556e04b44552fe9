from __future__ import annotations

import uvicorn

from gateway.settings import GatewaySettings
from kit import logs


def main() -> None:
    settings = GatewaySettings()
    logs.setup("gateway", level=settings.log_level, json_output=settings.log_json)
    uvicorn.run(
        "gateway.app:build",
        factory=True,
        host=settings.http_host,
        port=settings.http_port,
        log_config=None,
        access_log=False,
        # uvicorn would otherwise believe X-Forwarded-For from any 127.0.0.1 peer (or FORWARDED_ALLOW_IPS)
        # and rewrite the client address before the gateway sees it; `gateway.client_address` decides.
        proxy_headers=False,
        timeout_graceful_shutdown=10,
    )


if __name__ == "__main__":
    main()
