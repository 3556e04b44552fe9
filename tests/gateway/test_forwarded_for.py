"""Whose address is the client's: the real gateway process (`python -m gateway`, uvicorn as production
starts it) in front of the real accounts service, reached over TCP from 127.0.0.1.

X-Forwarded-For is anyone's to write. Unless the gateway is told it sits behind proxies, and the
connection comes from one of them, the header is ignored; when it is trusted, the client is the entry
the configured number of hops from the right (what the nearest proxies saw), never the leftmost one."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from devkit.embedded import free_port
from kit.bus import Bus
from services.accounts.models import refresh_tokens, users
from tests.accounts.stack import JWT_KEYS, PASSWORD, AccountsStack, new_email
from tests.conftest import ROOT
from tests.infra import Infra

BURST = 2


@contextlib.asynccontextmanager
async def gateway_process(
    infra: Infra, stack: AccountsStack, log: Path, **env: str
) -> AsyncIterator[httpx.AsyncClient]:
    port = free_port()
    namespace = f"xff{uuid.uuid4().hex[:8]}"
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("ATELIER_", "FORWARDED_ALLOW"))}
    environ.update(
        ATELIER_ENVIRONMENT="test",
        ATELIER_HTTP_HOST="127.0.0.1",
        ATELIER_HTTP_PORT=str(port),
        ATELIER_ACCOUNTS_ADDR=f"127.0.0.1:{stack.port}",
        ATELIER_NATS_URL=infra.nats_url,
        # A namespace of its own: rate limits live in NATS, and each test counts from a fresh start.
        ATELIER_NAMESPACE=namespace,
        ATELIER_JWT_KEYS=JWT_KEYS,
        ATELIER_LOGIN_IP_BURST=str(BURST),
        ATELIER_LOGIN_IP_REFILL_SECONDS="600",
        ATELIER_LOGIN_ACCOUNT_BURST="1000",
        ATELIER_PAYMENTS_SANDBOX_SECRET="sandbox-secret-for-the-forwarded-for-tests-0123",
        ATELIER_LOG_JSON="false",
        ATELIER_USER_TOKEN_SIGNING_KEY_FILE=os.environ["ATELIER_USER_TOKEN_SIGNING_KEY_FILE"],
        **env,
    )
    with log.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway", cwd=ROOT, env=environ, stdout=out, stderr=out
        )
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
                for _ in range(300):
                    assert process.returncode is None, log.read_text()  # noqa: ASYNC240
                    with contextlib.suppress(httpx.TransportError):
                        if (await http.get("/openapi.json")).status_code == 200:
                            break
                    await asyncio.sleep(0.1)
                else:
                    raise AssertionError(f"the gateway did not start:\n{log.read_text()}")  # noqa: ASYNC240
                yield http
        finally:
            if process.returncode is None:
                process.terminate()
            await process.wait()
            bus = await Bus.connect(infra.nats_url, namespace=namespace, name="test-cleanup")
            await bus.delete_streams()
            await bus.close()


async def _user(http: httpx.AsyncClient) -> str:
    email = new_email("xff")
    assert (
        await http.post("/v1/auth/register", json={"email": email, "password": PASSWORD})
    ).status_code == 201
    return email


async def _recorded_ip(stack: AccountsStack, email: str) -> str:
    """The address accounts stored with the newest session of this user: what the gateway took."""
    async with stack.db.transaction() as session:
        ip = (
            await session.execute(
                select(refresh_tokens.c.ip)
                .join(users, users.c.id == refresh_tokens.c.user_id)
                .where(users.c.email == email)
                .order_by(refresh_tokens.c.created_at.desc())
                .limit(1)
            )
        ).scalar_one()
    return str(ip)


async def _wrong_logins(http: httpx.AsyncClient, email: str, forwarded: list[str]) -> list[int]:
    wrong = {"email": email, "password": "not the password, not at all"}
    return [
        (await http.post("/v1/auth/login", json=wrong, headers={"X-Forwarded-For": f})).status_code
        for f in forwarded
    ]


async def test_forwarded_for_is_ignored_unless_configured(
    infra: Infra, accounts_stack: AccountsStack, tmp_path: Path
) -> None:
    # A proxy setting of uvicorn's own, read from the environment, must not reopen the hole either.
    async with gateway_process(infra, accounts_stack, tmp_path / "gw.log", FORWARDED_ALLOW_IPS="*") as http:
        email = await _user(http)
        signed_in = await http.post(
            "/v1/auth/login",
            json={"email": email, "password": PASSWORD},
            headers={"X-Forwarded-For": "203.0.113.9"},
        )
        assert signed_in.status_code == 200, signed_in.text
        assert await _recorded_ip(accounts_stack, email) == "127.0.0.1"
        rotated = [f"198.51.100.{i}" for i in range(1, 6)]
        codes = await _wrong_logins(http, email, rotated)
        assert codes == [401, 429, 429, 429, 429], "a rotated X-Forwarded-For got past a spent limit"


async def test_a_trusted_proxy_is_followed_by_the_configured_hops_from_the_right(
    infra: Infra, accounts_stack: AccountsStack, tmp_path: Path
) -> None:
    trusted = {
        "ATELIER_TRUST_FORWARDED_FOR": "true",
        "ATELIER_TRUSTED_PROXIES": "10.0.0.0/8, 127.0.0.1/32",
    }
    async with gateway_process(infra, accounts_stack, tmp_path / "one.log", **trusted) as http:
        email = await _user(http)
        spoofed = {"X-Forwarded-For": "192.0.2.66, 198.51.100.20"}  # the client wrote the first entry
        login = await http.post(
            "/v1/auth/login", json={"email": email, "password": PASSWORD}, headers=spoofed
        )
        assert login.status_code == 200, login.text
        assert await _recorded_ip(accounts_stack, email) == "198.51.100.20"
        # Rotating what the client writes changes nothing: its bucket is its proxy-seen address.
        codes = await _wrong_logins(http, email, [f"192.0.2.{i}, 198.51.100.21" for i in range(1, 5)])
        assert codes == [401, 401, 429, 429]
        # Another client behind the same proxy has a bucket of its own.
        assert await _wrong_logins(http, email, ["198.51.100.22"]) == [401]
        # A header that is not a list of addresses is not believed: the peer is the client.
        garbage = await _wrong_logins(http, email, ["not-an-address", "198.51.100.23, unknown"])
        assert garbage == [401, 401]
        assert await _wrong_logins(http, email, ["198.51.100.24"]) == [401]

    two_hops = {**trusted, "ATELIER_FORWARDED_FOR_HOPS": "2"}
    async with gateway_process(infra, accounts_stack, tmp_path / "two.log", **two_hops) as http:
        email = await _user(http)
        chain = {"X-Forwarded-For": "192.0.2.66, 198.51.100.30, 10.1.2.3"}
        login = await http.post("/v1/auth/login", json={"email": email, "password": PASSWORD}, headers=chain)
        assert login.status_code == 200, login.text
        assert await _recorded_ip(accounts_stack, email) == "198.51.100.30"
        short = {"X-Forwarded-For": "198.51.100.31"}  # fewer entries than hops: not believed
        login = await http.post("/v1/auth/login", json={"email": email, "password": PASSWORD}, headers=short)
        assert login.status_code == 200, login.text
        assert await _recorded_ip(accounts_stack, email) == "127.0.0.1"


async def test_forwarded_for_from_an_untrusted_peer_is_ignored(
    infra: Infra, accounts_stack: AccountsStack, tmp_path: Path
) -> None:
    elsewhere = {"ATELIER_TRUST_FORWARDED_FOR": "true", "ATELIER_TRUSTED_PROXIES": "10.0.0.0/8"}
    async with gateway_process(infra, accounts_stack, tmp_path / "gw.log", **elsewhere) as http:
        email = await _user(http)
        login = await http.post(
            "/v1/auth/login",
            json={"email": email, "password": PASSWORD},
            headers={"X-Forwarded-For": "198.51.100.40"},
        )
        assert login.status_code == 200, login.text
        assert await _recorded_ip(accounts_stack, email) == "127.0.0.1"
        codes = await _wrong_logins(http, email, [f"198.51.100.{i}" for i in range(41, 45)])
        assert codes == [401, 429, 429, 429]


def test_trusting_forwarded_for_needs_the_proxies_named() -> None:
    from gateway.settings import GatewaySettings

    with pytest.raises(ValueError, match="TRUSTED_PROXIES"):
        GatewaySettings(trust_forwarded_for=True)
    with pytest.raises(ValueError, match="not-a-network"):
        GatewaySettings(trust_forwarded_for=True, trusted_proxies="10.0.0.0/8,not-a-network")
    with pytest.raises(ValueError, match="forwarded_for_hops"):
        GatewaySettings(trust_forwarded_for=True, trusted_proxies="10.0.0.0/8", forwarded_for_hops=0)


def test_the_hops_count_across_repeated_headers_and_ipv6() -> None:
    from ipaddress import ip_network

    from gateway.client_address import ClientAddress

    two = ClientAddress((ip_network("10.0.0.0/8"), ip_network("fd00::/8")), hops=2)
    assert two.resolve("10.0.0.1", ["192.0.2.1, 2001:db8::5", "10.0.0.9"]) == "2001:db8::5"
    assert two.resolve("fd00::1", ["192.0.2.1", "198.51.100.2, 10.0.0.9"]) == "198.51.100.2"
    assert two.resolve("192.0.2.200", ["198.51.100.1, 10.0.0.9"]) == "192.0.2.200"  # not our proxy
    assert two.resolve(None, ["198.51.100.1, 10.0.0.9"]) == "unknown"
    assert ClientAddress((), hops=1).resolve("10.0.0.1", ["198.51.100.1"]) == "10.0.0.1"  # not configured
