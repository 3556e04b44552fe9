"""A role change, a disable, a password reset and a sign-out reach every gateway replica within the
session-check bound (5 s by default), whatever the access token still claims: two gateway apps in
front of the same real accounts and ledger services, the change made through one, the old token
tried on both."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest

from atelier.accounts.v1 import accounts_pb2
from atelier.ledger.v1 import ledger_pb2
from gateway.app import create_app
from gateway.auth import AccessTokens
from gateway.settings import GatewaySettings
from tests.accounts.stack import PASSWORD, AccountsStack, new_email, token_in
from tests.gateway.admin.conftest import LedgerStack, ensure_admin, settings_for, sign_in
from tests.gateway_app import serving
from tests.infra import Infra

SHORT = 0.5  # the cache bound these tests run with, so that each waits a moment, not five seconds


class Replicas:
    def __init__(self, https: list[httpx.AsyncClient], tokens: AccessTokens, accounts: Any) -> None:
        self.https = https
        self.tokens = tokens
        self.accounts = accounts

    async def session(self, email: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {await sign_in(self.accounts, self.tokens, email)}"}

    async def user(self) -> tuple[str, str]:
        email = new_email("member")
        reply = await self.accounts.Register(
            accounts_pb2.RegisterRequest(email=email, password=PASSWORD, locale="en")
        )
        return str(reply.user.id), email


@contextlib.asynccontextmanager
async def replicas(
    infra: Infra, accounts_stack: AccountsStack, ledger_stack: LedgerStack, **tuned: Any
) -> AsyncIterator[Replicas]:
    settings = settings_for(
        infra, accounts=f"127.0.0.1:{accounts_stack.port}", ledger=f"127.0.0.1:{ledger_stack.port}"
    )
    settings = GatewaySettings(**{**settings.model_dump(), "jwt_keys": settings.jwt_keys, **tuned})
    async with serving(create_app(settings)) as one, serving(create_app(settings)) as two:
        yield Replicas([one, two], AccessTokens(settings), accounts_stack.stub)


async def until(seconds: float, check: Callable[[], Awaitable[bool]]) -> float:
    """Seconds until `check` holds; fails if it does not within `seconds`."""
    started = time.monotonic()
    while not await check():
        elapsed = time.monotonic() - started
        assert elapsed <= seconds, f"still not in effect after {elapsed:.1f} s"
        await asyncio.sleep(0.05)
    return time.monotonic() - started


def adjust(user_id: str, amount: str = "1") -> tuple[str, dict[str, str]]:
    return f"/v1/admin/users/{user_id}/credit-adjustments", {"amount": amount, "reason": "test"}


async def test_a_demoted_admin_loses_admin_powers_on_every_replica(
    infra: Infra, accounts_stack: AccountsStack, ledger_stack: LedgerStack
) -> None:
    async with replicas(infra, accounts_stack, ledger_stack, session_check_ttl_seconds=SHORT) as r:
        (demoted_id, demoted_email), (_, other_email) = await asyncio.gather(
            ensure_admin(accounts_stack.stub), ensure_admin(accounts_stack.stub)
        )
        old, other = await r.session(demoted_email), await r.session(other_email)
        member, _ = await r.user()
        path, body = adjust(member)
        for http in r.https:  # both replicas have seen (and cached) the admin's session as an admin
            made = await http.post(path, json=body, headers={**old, "Idempotency-Key": str(uuid.uuid4())})
            assert made.status_code == 201, made.text

        demoted = await r.https[1].post(
            f"/v1/admin/users/{demoted_id}/role", json={"role": "user"}, headers=other
        )
        assert demoted.status_code == 200, demoted.text

        async def refused_everywhere() -> bool:
            answers = [await http.get("/v1/admin/users", headers=old) for http in r.https]
            return all(a.status_code == 403 and a.json()["code"] == "admin_required" for a in answers)

        assert await until(SHORT + 1, refused_everywhere) <= SHORT + 1
        for http in r.https:
            late = await http.post(path, json=body, headers={**old, "Idempotency-Key": str(uuid.uuid4())})
            assert late.status_code == 403, late.text
            assert late.json()["code"] == "admin_required"
        balance = await ledger_stack.stub.GetBalance(ledger_pb2.GetBalanceRequest(user_id=member))
        assert balance.balance.available.milli == 2000, "only the two adjustments made before"

        # The other way round, a promotion reaches a token minted while the user was a user.
        promoted = await r.https[0].post(
            f"/v1/admin/users/{demoted_id}/role", json={"role": "admin"}, headers=other
        )
        assert promoted.status_code == 200

        async def admitted_everywhere() -> bool:
            answers = [await http.get("/v1/admin/users", headers=old) for http in r.https]
            return all(a.status_code == 200 for a in answers)

        await until(SHORT + 1, admitted_everywhere)


async def test_a_disabled_user_and_a_reset_password_end_the_old_access_token(
    infra: Infra, accounts_stack: AccountsStack, ledger_stack: LedgerStack
) -> None:
    async with replicas(infra, accounts_stack, ledger_stack, session_check_ttl_seconds=SHORT) as r:
        _, admin_email = await ensure_admin(accounts_stack.stub)
        admin = await r.session(admin_email)
        (disabled_id, disabled_email), (_, reset_email), (_, out_email) = (
            await r.user(),
            await r.user(),
            await r.user(),
        )
        disabled, reset, signed_out = (
            await r.session(disabled_email),
            await r.session(reset_email),
            await r.session(out_email),
        )
        for http in r.https:
            for headers in (disabled, reset, signed_out):
                assert (await http.get("/v1/me", headers=headers)).status_code == 200

        assert (
            await r.https[0].post(
                f"/v1/admin/users/{disabled_id}/status", json={"status": "disabled"}, headers=admin
            )
        ).status_code == 200
        await accounts_stack.stub.RequestPasswordReset(
            accounts_pb2.RequestPasswordResetRequest(email=reset_email)
        )
        mail = await accounts_stack.inbox.wait_for(reset_email, count=2)  # after the verification mail
        await accounts_stack.stub.ConfirmPasswordReset(
            accounts_pb2.ConfirmPasswordResetRequest(token=token_in(mail), new_password="a new passphrase!")
        )
        refresh_of_out = await accounts_stack.stub.Login(
            accounts_pb2.LoginRequest(email=out_email, password=PASSWORD)
        )
        await accounts_stack.stub.Logout(
            accounts_pb2.LogoutRequest(refresh_token=refresh_of_out.refresh_token.token, all_sessions=True)
        )

        async def ended(headers: dict[str, str], status: int, code: str) -> bool:
            answers = [await http.get("/v1/me", headers=headers) for http in r.https]
            return all(a.status_code == status and a.json()["code"] == code for a in answers)

        await until(SHORT + 1, lambda: ended(disabled, 403, "account_disabled"))
        await until(SHORT + 1, lambda: ended(reset, 401, "session_ended"))
        await until(SHORT + 1, lambda: ended(signed_out, 401, "session_ended"))
        gone = await r.https[0].get("/v1/me", headers=reset)
        assert gone.headers["www-authenticate"].startswith("Bearer")
        # Money moves are refused as well, not only reads.
        for http in r.https:
            spend = await http.post("/v1/billing/recharges", json={}, headers=disabled)
            assert spend.status_code == 403
            assert spend.json()["code"] == "account_disabled"


async def test_the_default_bound_is_five_seconds(
    infra: Infra, accounts_stack: AccountsStack, ledger_stack: LedgerStack
) -> None:
    assert GatewaySettings().session_check_ttl_seconds <= 5
    with pytest.raises(ValueError, match="session_check_ttl_seconds"):
        GatewaySettings(session_check_ttl_seconds=6)

    async with replicas(infra, accounts_stack, ledger_stack) as r:  # the defaults
        (demoted_id, demoted_email), (_, other_email) = await asyncio.gather(
            ensure_admin(accounts_stack.stub), ensure_admin(accounts_stack.stub)
        )
        old, other = await r.session(demoted_email), await r.session(other_email)
        for http in r.https:
            assert (await http.get("/v1/admin/users", headers=old)).status_code == 200
        assert (
            await r.https[0].post(f"/v1/admin/users/{demoted_id}/role", json={"role": "user"}, headers=other)
        ).status_code == 200

        async def refused_everywhere() -> bool:
            answers = [await http.get("/v1/admin/users", headers=old) for http in r.https]
            return all(a.status_code == 403 for a in answers)

        assert await until(5.5, refused_everywhere) <= 5.5
