"""Certificates rotate without a restart: every workload's files are replaced (as cert-manager renews
them) while clients keep calling through the gateway, and no request fails.

Servers present the new certificate on their next handshake (`kit.tls.TlsFiles` behind gRPC's dynamic
server credentials); clients open a new channel on their next call (`kit.grpc_client.RotatingChannel`)
while calls in flight finish on the old one.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
import uuid
from pathlib import Path

from cryptography import x509

from devkit.pki import Authority
from tests.e2e.stack import Stack
from tests.e2e.test_journey import register_and_verify


def served_serial(pki: Path, target: str, peer: str, client: str = "operator") -> int:
    """The serial of the certificate the server at `target` presents to a new connection."""
    host, port = target.rsplit(":", 1)
    context = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    context.load_cert_chain(pki / client / "tls.crt", pki / client / "tls.key")
    context.set_alpn_protocols(["h2"])
    with socket.create_connection((host, int(port)), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname=peer) as tls:
            der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def serial(path: Path) -> int:
    return x509.load_pem_x509_certificate(path.read_bytes()).serial_number


def test_certificates_rotate_under_load_without_a_restart(stack: Stack) -> None:
    token = register_and_verify(stack, f"rotation-{uuid.uuid4().hex[:8]}@example.com")
    info = stack.info()
    pki = Path(info["pki"])
    authority = Authority.load_or_create(pki)
    failures: list[str] = []
    answered = [0]
    stop = threading.Event()

    def load() -> None:
        with stack.client(token) as http:
            while not stop.is_set():
                reply = http.get("/v1/billing/balance")
                if reply.status_code != 200:
                    failures.append(f"{reply.status_code} {reply.text[:200]}")
                answered[0] += 1
                time.sleep(0.1)  # 4 clients at 10/s stay under the account's rate limit (50/s)

    threads = [threading.Thread(target=load) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(2)
        renewed = {}
        for workload in ("gateway", "accounts", "ledger"):
            authority.issue(workload, pki / workload)
            renewed[workload] = serial(pki / workload / "tls.crt")
        before = answered[0]
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and answered[0] < before + 100:
            time.sleep(0.2)
        for service in ("accounts", "ledger"):
            assert served_serial(pki, info["services"][service], service) == renewed[service]
        time.sleep(2)  # calls keep going on the new channels
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert not failures, failures[:5]
    assert answered[0] >= before + 100
    gateway_log = (stack.home / "logs" / "gateway.log").read_text()
    assert "tls files reloaded" in gateway_log, "the gateway never opened channels with its new certificate"
