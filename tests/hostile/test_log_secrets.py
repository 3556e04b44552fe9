"""Hostile traffic through the whole stack, then every log file of it read back: no password, token,
API key or emailed link the traffic created or read is in any of them, and nothing shaped like a
password hash (`$argon2`), a JWT (`eyJ`) or an API key (`atl_`) either. The traffic includes requests
that make statements fail (NUL bytes, very long values), so tracebacks are written and read too."""

from __future__ import annotations

import email
import re
import time
import uuid
from pathlib import Path

import jwt
import pytest

from tests.e2e.stack import Stack

pytestmark = pytest.mark.slow

PATTERNS = ("$argon2", "eyJ", "atl_")
_LINK = re.compile(r"https?://\S+?/(?:verify-email|reset-password)/([A-Za-z0-9_=-]+)")


def outbox_secrets(home: Path) -> list[str]:
    """Every emailed link in the dev mail outbox, and the token in it."""
    found: list[str] = []
    for path in (home / "mail").glob("*.eml"):
        for part in email.message_from_bytes(path.read_bytes()).walk():
            if part.get_content_type() in ("text/plain", "text/html"):
                text = part.get_payload(decode=True).decode()  # type: ignore[union-attr]
                for link in _LINK.finditer(text):
                    found += [link.group(0), link.group(1)]
    return found


def newest_token(home: Path, address: str, kind: str, after: set[Path]) -> str:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        for path in set((home / "mail").glob("*.eml")) - after:
            message = email.message_from_bytes(path.read_bytes())
            if address not in str(message["To"]):
                continue
            for part in message.walk():
                if part.get_content_type() == "text/plain":
                    text = part.get_payload(decode=True).decode()  # type: ignore[union-attr]
                    found = re.search(rf"/{kind}/([A-Za-z0-9_=-]+)", text)
                    if found:
                        return found.group(1)
        time.sleep(0.2)
    raise AssertionError(f"no {kind} mail for {address}")


def log_files(stack: Stack) -> list[Path]:
    return sorted(stack.home.rglob("*.log"))


def test_no_secret_reaches_any_log(stack: Stack) -> None:
    tag = uuid.uuid4().hex[:10]
    address = f"logs-{tag}@example.com"
    passwords = [f"correct horse {tag} {n}" for n in range(6)]
    secrets: list[str] = list(passwords)
    mail = stack.home / "mail"
    with stack.client() as http:
        assert (
            http.post("/v1/auth/register", json={"email": address, "password": passwords[0]}).status_code
            == 201
        )
        # A duplicate, a NUL in the address (the insert fails with the new hash among its values), and
        # values far longer than any column expects.
        http.post("/v1/auth/register", json={"email": address, "password": passwords[1]})
        http.post("/v1/auth/register", json={"email": f"nul-{tag}\x00@example.com", "password": passwords[2]})
        http.post("/v1/auth/register", json={"email": f"{'l' * 240}@example.com", "password": passwords[2]})
        http.post("/v1/auth/register", json={"email": f"long-{tag}@example.com", "password": "p" * 1000})

        token = stack.verification_token(address)
        assert http.get(f"/v1/auth/verify-email/{token}").status_code == 200  # the link, as a mail client
        http.post("/v1/auth/verify-email", json={"token": token})  # spent
        http.post("/v1/auth/verify-email", json={"token": token + "\x00"})

        assert (
            http.post("/v1/auth/login", json={"email": address, "password": passwords[3]}).status_code == 401
        )
        http.post("/v1/auth/login", json={"email": f"{address}\x00", "password": passwords[0]})
        first = http.post("/v1/auth/login", json={"email": address, "password": passwords[0]}).json()
        rotated = http.post("/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}).json()
        assert (
            http.post("/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}).status_code == 401
        )
        session = http.post("/v1/auth/login", json={"email": address, "password": passwords[0]}).json()
        secrets += [
            first["access_token"],
            first["refresh_token"],
            rotated["access_token"],
            rotated["refresh_token"],
            session["access_token"],
            session["refresh_token"],
        ]

        bearer = {"Authorization": f"Bearer {session['access_token']}"}
        http.post("/v1/api-keys", json={"name": f"nul \x00 {tag}"}, headers=bearer)
        http.post("/v1/api-keys", json={"name": "n" * 5000}, headers=bearer)
        created = http.post("/v1/api-keys", json={"name": "ci"}, headers=bearer)
        assert created.status_code == 201, created.text
        key = created.json()["key"]
        forged_key = f"atl_test_{tag[:8]}_" + "A" * 43
        forged_jwt = jwt.encode({"sub": str(uuid.uuid4()), "role": "admin"}, "not-the-key-" * 4, "HS256")
        secrets += [key, forged_key, forged_jwt]
        assert http.get("/v1/me", headers={"Authorization": f"Bearer {key}"}).status_code == 200
        for bad in (forged_key, forged_jwt, f"{forged_jwt}\x01"):
            http.get("/v1/me", headers={"Authorization": f"Bearer {bad}"})

        # Work with hostile inputs: a NUL in a prompt, a prompt far too long, an oversized key.
        for prompt in (f"a mug \x00 {tag}", "x" * 200_000):
            http.post(
                "/v1/tasks",
                json={"kind": "image", "model": "gpt-image-1.5-all", "prompt": prompt, "ratio": "1:1"},
                headers={**bearer, "Idempotency-Key": str(uuid.uuid4())},
            )
        http.post(
            "/v1/tasks",
            json={"kind": "image", "model": "gpt-image-1.5-all", "prompt": "a mug", "ratio": "1:1"},
            headers={**bearer, "Idempotency-Key": "k" * 5000},
        )

        seen = set(mail.glob("*.eml"))
        assert http.post("/v1/auth/password-reset", json={"email": address}).status_code == 202
        reset = newest_token(stack.home, address, "reset-password", seen)
        http.post("/v1/auth/password-reset/confirm", json={"token": reset, "new_password": "short"})
        confirmed = http.post(
            "/v1/auth/password-reset/confirm", json={"token": reset, "new_password": passwords[4]}
        )
        assert confirmed.status_code == 204, confirmed.text
        http.post("/v1/auth/password-reset/confirm", json={"token": reset, "new_password": passwords[5]})
        assert (
            http.post("/v1/auth/login", json={"email": address, "password": passwords[4]}).status_code == 200
        )
        http.post("/v1/auth/logout", json={"refresh_token": session["refresh_token"]})

    secrets += outbox_secrets(stack.home)
    assert {reset, token} <= set(secrets), "the mailed links are among the secrets looked for"
    time.sleep(1.0)  # the services write their last lines
    files = log_files(stack)
    names = {path.name for path in files}
    assert {"accounts.log", "gateway.log", "launcher.log"} <= names, names
    assert (stack.home / "logs" / "accounts.log").stat().st_size > 0
    leaks = []
    for path in files:
        text = path.read_text(errors="replace")
        for needle in [*secrets, *PATTERNS]:
            at = text.find(needle)
            if at >= 0:
                line = text[text.rfind("\n", 0, at) + 1 : text.find("\n", at)]
                leaks.append(f"{path.name}: {needle[:24]!r} in {line[:600]}")
    assert not leaks, "\n".join(leaks)
