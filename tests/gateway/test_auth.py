"""The auth journey over HTTP: the gateway app in front of the real accounts gRPC service, a real SMTP
server receiving the mail, and every secret kept out of the logs."""

from __future__ import annotations

import asyncio
import logging
import time

import grpc
import httpx
import jwt
import pytest
from fastapi import FastAPI

from atelier.accounts.v1 import accounts_pb2 as pb
from gateway.auth import AuthState
from kit.identity import Identity
from kit.logs import JsonFormatter
from tests import identities
from tests.accounts.stack import (
    JWT_KEYS,
    PASSWORD,
    SMTP_PASSWORD,
    AccountsStack,
    accounts_gateway,
    bearer,
    link_in,
    login,
    new_email,
    register,
    running,
    token_in,
    verified_user,
)
from tests.infra import Infra


async def test_register_mail_link_verify_login_me(
    api: httpx.AsyncClient, accounts_stack: AccountsStack
) -> None:
    email = new_email()
    user = await register(api, email.upper().replace("@", " @").replace(" @", "@") + "  ")
    assert user["email"] == email  # normalized: trimmed and lower-cased
    assert user["status"] == "unverified"
    assert user["locale"] == "en"

    message = await accounts_stack.inbox.wait_for(email)
    assert message["Subject"] == "Verify your Atelier email address"
    assert SMTP_PASSWORD not in message.as_string()
    assert accounts_stack.inbox.logins, "the mailer did not authenticate to the SMTP server"
    link = link_in(message)
    assert link.startswith("http://testserver/verify-email/")  # the console's page
    token = link.rsplit("/", 1)[1]

    followed = await api.post("/v1/auth/verify-email", json={"token": token})  # what that page does
    assert followed.status_code == 200, followed.text
    assert followed.json()["status"] == "active"
    assert followed.json()["email_verified_at"]

    again = await api.get(f"/v1/auth/verify-email/{token}")  # the API's own link form, reused
    assert again.status_code == 400
    assert again.json()["code"] == "token_used"

    session = await login(api, email.upper())
    assert session["token_type"] == "Bearer"
    assert 0 < session["expires_in"] <= 900
    me = await api.get("/v1/me", headers=bearer(session["access_token"]))
    assert me.status_code == 200
    assert me.json()["email"] == email
    assert me.json()["auth_method"] == "session"

    taken = await api.post("/v1/auth/register", json={"email": email.upper(), "password": PASSWORD})
    assert taken.status_code == 409
    assert taken.json()["code"] == "email_taken"


async def test_chinese_mail_follows_the_locale(api: httpx.AsyncClient, accounts_stack: AccountsStack) -> None:
    email = new_email("zh")
    user = (
        await api.post(
            "/v1/auth/register",
            json={"email": email, "password": PASSWORD},
            headers={"Accept-Language": "zh-CN,zh;q=0.9"},
        )
    ).json()
    assert user["locale"] == "zh"
    message = await accounts_stack.inbox.wait_for(email)
    assert message["Subject"] == "验证你的 Atelier 邮箱"
    assert "请打开下面的链接" in message.get_body(("plain",)).get_content()  # type: ignore[union-attr]


async def test_forged_and_malformed_tokens_are_refused(api: httpx.AsyncClient) -> None:
    forged = await api.post("/v1/auth/verify-email", json={"token": "A" * 43})
    assert forged.status_code == 400
    assert forged.json()["code"] == "invalid_token"
    empty = await api.post("/v1/auth/verify-email", json={"token": ""})
    assert empty.status_code == 422
    reset = await api.post(
        "/v1/auth/password-reset/confirm", json={"token": "B" * 43, "new_password": "another long password"}
    )
    assert reset.status_code == 400
    assert reset.json()["code"] == "invalid_token"


async def test_resend_is_uniform_and_cooled_down(
    api: httpx.AsyncClient, accounts_stack: AccountsStack
) -> None:
    email = new_email()
    await register(api, email)
    await accounts_stack.inbox.wait_for(email)
    unknown = await api.post("/v1/auth/resend-verification", json={"email": new_email("nobody")})
    known = await api.post("/v1/auth/resend-verification", json={"email": email})
    assert unknown.status_code == known.status_code == 202
    assert unknown.json() == known.json()
    await api.post("/v1/auth/resend-verification", json={"email": email})
    await asyncio.sleep(0.5)  # time for a (wrongly) queued mail to arrive
    assert len(accounts_stack.inbox.to(email)) == 1, "the cooldown let a second mail through"


async def test_wrong_password_and_unknown_email_answer_alike(
    api: httpx.AsyncClient, accounts_stack: AccountsStack
) -> None:
    email, _ = await verified_user(api, accounts_stack)
    wrong = await api.post("/v1/auth/login", json={"email": email, "password": "not the password at all"})
    unknown = await api.post("/v1/auth/login", json={"email": new_email("ghost"), "password": PASSWORD})
    assert wrong.status_code == unknown.status_code == 401

    def strip(body: dict[str, object]) -> dict[str, object]:
        return {k: v for k, v in body.items() if k not in ("instance", "trace_id")}

    assert strip(wrong.json()) == strip(unknown.json())
    assert wrong.json()["code"] == "invalid_credentials"
    assert wrong.headers.get("content-type") == unknown.headers.get("content-type")


async def test_refresh_rotates_and_reuse_revokes_the_family(
    api: httpx.AsyncClient, accounts_stack: AccountsStack
) -> None:
    _, first = await verified_user(api, accounts_stack)
    second = (await api.post("/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})).json()
    assert second["refresh_token"] != first["refresh_token"]
    assert second["session_id"] == first["session_id"]
    third = (await api.post("/v1/auth/refresh", json={"refresh_token": second["refresh_token"]})).json()
    assert "refresh_token" in third

    # A thief replays the first (already rotated) token: refused, and the whole session dies with it.
    replay = await api.post("/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert replay.status_code == 401
    assert replay.json()["code"] == "refresh_token_reused"
    legit = await api.post("/v1/auth/refresh", json={"refresh_token": third["refresh_token"]})
    assert legit.status_code == 401
    assert legit.json()["code"] == "invalid_refresh_token"


async def test_logout_revokes_this_session_or_all(
    api: httpx.AsyncClient, accounts_stack: AccountsStack
) -> None:
    email, one = await verified_user(api, accounts_stack)
    two = await login(api, email)
    three = await login(api, email)
    assert (
        await api.post("/v1/auth/logout", json={"refresh_token": one["refresh_token"]})
    ).status_code == 204
    assert (
        await api.post("/v1/auth/refresh", json={"refresh_token": one["refresh_token"]})
    ).status_code == 401
    assert (
        await api.post("/v1/auth/refresh", json={"refresh_token": two["refresh_token"]})
    ).status_code == 200
    everywhere = {"refresh_token": three["refresh_token"], "all_sessions": True}
    assert (await api.post("/v1/auth/logout", json=everywhere)).status_code == 204
    assert (await api.post("/v1/auth/logout", json=everywhere)).status_code == 204  # idempotent
    refused = await api.post("/v1/auth/refresh", json={"refresh_token": three["refresh_token"]})
    assert refused.status_code == 401


async def test_password_reset_by_mail_revokes_sessions(
    api: httpx.AsyncClient, accounts_stack: AccountsStack
) -> None:
    email, session = await verified_user(api, accounts_stack)
    unknown = await api.post("/v1/auth/password-reset", json={"email": new_email("nobody")})
    known = await api.post("/v1/auth/password-reset", json={"email": email})
    assert unknown.status_code == known.status_code == 202
    assert unknown.json() == known.json()
    message = await accounts_stack.inbox.wait_for(email, count=2)
    assert message["Subject"] == "Reset your Atelier password"
    token = token_in(message)

    weak = await api.post("/v1/auth/password-reset/confirm", json={"token": token, "new_password": "short"})
    assert weak.status_code == 400
    assert weak.json()["code"] == "weak_password"
    new_password = "a brand new passphrase"
    done = await api.post(
        "/v1/auth/password-reset/confirm", json={"token": token, "new_password": new_password}
    )
    assert done.status_code == 204, done.text
    reused = await api.post(
        "/v1/auth/password-reset/confirm", json={"token": token, "new_password": new_password}
    )
    assert reused.json()["code"] == "token_used"

    refused = await api.post("/v1/auth/refresh", json={"refresh_token": session["refresh_token"]})
    assert refused.status_code == 401, "a reset must sign the account out everywhere"
    old = await api.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert old.status_code == 401
    await login(api, email, new_password)


async def test_unverified_users_read_but_cannot_submit_or_recharge(
    api: httpx.AsyncClient, accounts_stack: AccountsStack
) -> None:
    email = new_email()
    await register(api, email)
    session = await login(api, email)
    assert session["user"]["status"] == "unverified"
    headers = bearer(session["access_token"])
    assert (await api.get("/v1/me", headers=headers)).status_code == 200
    for path in ("/test/submit", "/test/recharge"):
        refused = await api.post(path, headers=headers)
        assert refused.status_code == 403
        assert refused.json()["code"] == "email_not_verified"

    message = await accounts_stack.inbox.wait_for(email)
    await api.post("/v1/auth/verify-email", json={"token": token_in(message)})
    # The same access token (minted while unverified) works at once: the refusal path re-checks.
    assert (await api.post("/test/submit", headers=headers)).status_code == 200


async def test_admin_only_is_refused_to_users(api: httpx.AsyncClient, accounts_stack: AccountsStack) -> None:
    _, user_session = await verified_user(api, accounts_stack)
    refused = await api.get("/test/admin", headers=bearer(user_session["access_token"]))
    assert refused.status_code == 403
    assert refused.json()["code"] == "admin_required"

    admin_email = new_email("admin")
    async with accounts_stack.db.transaction() as session:
        from services.accounts.__main__ import build_service

        await build_service(accounts_stack.settings).ensure_admin(
            session, email=admin_email, password=PASSWORD, locale="en"
        )
    admin = await login(api, admin_email)
    assert admin["user"]["role"] == "admin"
    assert (await api.get("/test/admin", headers=bearer(admin["access_token"]))).status_code == 200

    # The service itself refuses admin RPCs to a user identity, whatever the gateway does.
    user_identity = Identity(user_id=user_session["user"]["id"], role="user", status="active")
    with pytest.raises(grpc.aio.AioRpcError) as denied:
        await accounts_stack.stub.ListUsers(pb.ListUsersRequest(), metadata=identities.user(user_identity))
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.aio.AioRpcError) as anonymous:
        await accounts_stack.stub.GetUser(pb.GetUserRequest())
    assert anonymous.value.code() == grpc.StatusCode.UNAUTHENTICATED
    admin_identity = Identity(user_id=admin["user"]["id"], role="admin", status="active")
    found = await accounts_stack.stub.ListUsers(
        pb.ListUsersRequest(email_query=admin_email.upper()), metadata=identities.user(admin_identity)
    )
    assert [u.email for u in found.users] == [admin_email]


async def test_api_keys_authenticate_until_revoked(
    api: httpx.AsyncClient, accounts_stack: AccountsStack
) -> None:
    _, session = await verified_user(api, accounts_stack)
    headers = bearer(session["access_token"])
    created = await api.post("/v1/api-keys", json={"name": "ci", "scopes": ["read"]}, headers=headers)
    assert created.status_code == 201, created.text
    key = created.json()["key"]
    meta = created.json()["api_key"]
    assert key.startswith(meta["prefix"] + "_")
    assert meta["prefix"].startswith("atl_test_")
    assert meta["scopes"] == ["read"]

    me = await api.get("/v1/me", headers=bearer(key))
    assert me.status_code == 200
    assert me.json()["auth_method"] == "api_key"
    assert me.json()["scopes"] == ["read"]
    # A read-only key may not act, and no key may mint more keys.
    assert (await api.post("/test/submit", headers=bearer(key))).json()["code"] == "insufficient_scope"
    minted = await api.post("/v1/api-keys", json={"name": "more"}, headers=bearer(key))
    assert minted.status_code == 403
    assert minted.json()["code"] == "session_required"

    listed = (await api.get("/v1/api-keys", headers=headers)).json()
    assert [k["id"] for k in listed["items"]] == [meta["id"]]
    assert key not in str(listed)
    assert listed["items"][0]["last_used_at"] is not None

    revoked = await api.delete(f"/v1/api-keys/{meta['id']}", headers=headers)
    assert revoked.status_code == 200
    assert revoked.json()["revoked_at"]
    refused = await api.get("/v1/me", headers=bearer(key))
    assert refused.status_code == 401
    assert refused.json()["code"] == "invalid_api_key"
    assert (await api.get("/v1/api-keys", headers=headers)).json()["items"] == []
    with_revoked = (await api.get("/v1/api-keys?include_revoked=true", headers=headers)).json()
    assert len(with_revoked["items"]) == 1

    # Someone else's key id is simply not found.
    _, other = await verified_user(api, accounts_stack)
    theirs = await api.delete(f"/v1/api-keys/{meta['id']}", headers=bearer(other["access_token"]))
    assert theirs.status_code == 404
    forged = await api.get("/v1/me", headers=bearer(key[:-4] + "AAAA"))
    assert forged.status_code == 401


async def test_jwt_forgery_expiry_and_key_rotation(
    infra: Infra, api: httpx.AsyncClient, accounts_stack: AccountsStack
) -> None:
    _, session = await verified_user(api, accounts_stack)
    token = session["access_token"]
    assert jwt.get_unverified_header(token)["kid"] == "k2"  # the newest key signs

    claims = jwt.decode(token, options={"verify_signature": False})
    forged = jwt.encode(
        {**claims, "role": "admin"}, "not-the-key-0123456789abcdef0123456789", headers={"kid": "k2"}
    )
    assert (await api.get("/v1/me", headers=bearer(forged))).json()["code"] == "invalid_token"
    unknown_kid = jwt.encode(claims, "whatever-0123456789abcdef0123456789abc", headers={"kid": "k9"})
    assert (await api.get("/v1/me", headers=bearer(unknown_kid))).status_code == 401
    none_alg = jwt.encode({**claims}, "", algorithm="none", headers={"kid": "k2"})  # "" is no key
    assert (await api.get("/v1/me", headers=bearer(none_alg))).status_code == 401
    k2_secret = JWT_KEYS.split(",")[0].split(":", 1)[1]
    expired = jwt.encode({**claims, "exp": int(time.time()) - 60}, k2_secret, headers={"kid": "k2"})
    late = await api.get("/v1/me", headers=bearer(expired))
    assert late.status_code == 401
    assert late.json()["code"] == "token_expired"
    assert late.headers["www-authenticate"].startswith("Bearer")

    # Rotation: a new key k3 signs; tokens from k2 still verify until k2 is retired.
    rotated = accounts_gateway(
        infra, accounts_stack.port, jwt_keys="k3:third-signing-key-0123456789abcdef012345," + JWT_KEYS
    )
    async with running(rotated) as newer:
        assert (await newer.get("/v1/me", headers=bearer(token))).status_code == 200
        fresh = await login(newer, session["user"]["email"])
        assert jwt.get_unverified_header(fresh["access_token"])["kid"] == "k3"
    retired = accounts_gateway(
        infra, accounts_stack.port, jwt_keys="k3:third-signing-key-0123456789abcdef012345"
    )
    async with running(retired) as newest:
        assert (await newest.get("/v1/me", headers=bearer(token))).status_code == 401
        assert (await newest.get("/v1/me", headers=bearer(fresh["access_token"]))).status_code == 200


async def test_login_is_rate_limited_per_account_and_per_ip(
    infra: Infra, accounts_stack: AccountsStack
) -> None:
    app = accounts_gateway(
        infra,
        accounts_stack.port,
        login_account_burst=3,
        login_account_refill_seconds=12,
        login_ip_burst=6,
        login_ip_refill_seconds=3,
    )
    async with running(app) as api:
        email = new_email()
        await register(api, email)
        wrong = {"email": email, "password": "definitely wrong password"}
        codes = [(await api.post("/v1/auth/login", json=wrong)).status_code for _ in range(3)]
        assert codes == [401, 401, 401]
        limited = await api.post("/v1/auth/login", json=wrong)
        assert limited.status_code == 429
        assert limited.json()["code"] == "rate_limited"
        assert 1 <= int(limited.headers["retry-after"]) <= 12
        # Even the right password waits: the bucket counts attempts, not failures.
        assert (await api.post("/v1/auth/login", json={**wrong, "password": PASSWORD})).status_code == 429

        # Per IP: other accounts from the same address run out too.
        statuses = [
            (await api.post("/v1/auth/login", json={"email": new_email(), "password": "x" * 12})).status_code
            for _ in range(3)
        ]
        assert statuses[-1] == 429
        assert 401 in statuses


def test_placeholder_secrets_are_refused_outside_development(infra: Infra) -> None:
    from gateway.settings import GatewaySettings

    GatewaySettings(environment="development")  # the dev default is fine on a laptop
    with pytest.raises(ValueError, match="placeholder"):
        GatewaySettings(environment="production", grpc_tls_dir="/run/tls")
    with pytest.raises(ValueError, match="placeholder"):
        GatewaySettings(environment="test", jwt_keys="k1:short")
    with pytest.raises(ValueError, match="kid:secret"):
        GatewaySettings(environment="development", jwt_keys="no-kid-here")
    assert isinstance(
        AuthState.from_settings(GatewaySettings(environment="test", jwt_keys=JWT_KEYS)), AuthState
    )


async def test_no_secret_reaches_the_logs(
    api: httpx.AsyncClient, accounts_stack: AccountsStack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    for noisy in ("sqlalchemy.engine", "httpx", "httpcore", "asyncio", "mail.log"):
        logging.getLogger(noisy).setLevel(logging.WARNING)  # as kit.logs.setup does in production
    secrets: list[str] = [
        PASSWORD,
        SMTP_PASSWORD,
        "another long passphrase",
        JWT_KEYS.split(",")[0].split(":")[1],
    ]

    email = new_email()
    await register(api, email)
    message = await accounts_stack.inbox.wait_for(email)
    secrets.append(token_in(message))
    await api.get(link_in(message).removeprefix("http://testserver"))  # follow the link
    await api.post("/v1/auth/verify-email", json={"token": token_in(message)})  # an error path too
    session = await login(api, email)
    secrets += [session["access_token"], session["refresh_token"]]
    await api.post("/v1/auth/login", json={"email": email, "password": "another long passphrase"})
    rotated = (await api.post("/v1/auth/refresh", json={"refresh_token": session["refresh_token"]})).json()
    secrets += [rotated["access_token"], rotated["refresh_token"]]
    key = (await api.post("/v1/api-keys", json={"name": "k"}, headers=bearer(rotated["access_token"]))).json()
    secrets.append(key["key"])
    await api.post("/v1/auth/refresh", json={"refresh_token": session["refresh_token"]})  # reuse
    await api.get("/v1/me", headers=bearer(key["key"]))
    await api.post("/v1/auth/password-reset", json={"email": email})
    reset = await accounts_stack.inbox.wait_for(email, count=2)
    secrets.append(token_in(reset))
    await api.post(
        "/v1/auth/password-reset/confirm",
        json={"token": token_in(reset), "new_password": "another long passphrase"},
    )

    assert caplog.records, "nothing was logged: the test would prove nothing"
    formatter = JsonFormatter("tests")
    raw = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    written = "\n".join(formatter.format(r) for r in caplog.records)
    for secret in secrets:
        assert secret not in raw, "a secret reached a log record"
        assert secret not in written


async def test_an_accounts_requests_are_limited_across_gateway_replicas(
    infra: Infra, accounts_stack: AccountsStack
) -> None:
    def replica() -> FastAPI:
        return accounts_gateway(
            infra, accounts_stack.port, api_account_burst=5, api_account_refill_seconds=60
        )

    async with running(replica()) as first, running(replica()) as second:
        email = new_email()
        await register(first, email)
        token = (await login(second, email))["access_token"]
        replies = [await (first, second)[n % 2].get("/v1/me", headers=bearer(token)) for n in range(8)]
        assert [r.status_code for r in replies] == [200] * 5 + [429] * 3
        assert replies[-1].json()["code"] == "rate_limited"
        assert 1 <= int(replies[-1].headers["retry-after"]) <= 180
        # Another account is not held back by this one.
        other = new_email()
        await register(second, other)
        other_token = (await login(first, other))["access_token"]
        assert (await second.get("/v1/me", headers=bearer(other_token))).status_code == 200
